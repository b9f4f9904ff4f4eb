"""Container networks: bridge networks through netavark (podman's network stack) with aardvark-dns
for container names, published ports, and isolation between networks.

- model.py      typed values: Network, Endpoint, PortMapping; ``-p``/``--expose`` parsing (pure)
- ipam.py       subnet and address choice (pure): free ranges beside the host's routes, next free IP
- store.py      networks, endpoints and port reservations in the metadata DB
- netns.py      named network namespaces (a bind-mounted nsfs file per container)
- netavark.py   the driver: ``netavark setup/teardown`` with the container's networks and ports
- firewall.py   isolation between bridges (Docker's two-stage isolation chains)
"""
