"""Networks, pure parts: ``-p``/``--expose`` parsing (Docker's nat.ParsePortSpec forms and words),
IPAM (subnet choice beside the host's routes, address allocation, static IPs and MACs), the
isolation rules of a bridge, and the ``docker port``/``docker ps`` renderings of a mapping."""

from __future__ import annotations

import ipaddress

import pytest

from dockyard.engine.networks import port_lines
from dockyard.errors import Conflict, InvalidArgument
from dockyard.networks import firewall, ipam
from dockyard.networks.model import (
    PortMapping,
    format_mapping,
    merge_bindings,
    parse_expose,
    parse_publish,
    port_key,
)


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def b(ip: str = "", port: str = "") -> dict[str, str]:
    return {"HostIp": ip, "HostPort": port}


# -- parse_publish ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    ("80", {"80/tcp": [b()]}),
    ("8080:80", {"80/tcp": [b("", "8080")]}),
    ("127.0.0.1:8080:80", {"80/tcp": [b("127.0.0.1", "8080")]}),
    ("127.0.0.1::80", {"80/tcp": [b("127.0.0.1", "")]}),
    ("0.0.0.0:1234:1234/tcp", {"1234/tcp": [b("0.0.0.0", "1234")]}),
    ("192.168.1.100::6000/udp", {"6000/udp": [b("192.168.1.100", "")]}),
    ("192.168.1.100::6000/sctp", {"6000/sctp": [b("192.168.1.100", "")]}),
    (":8080:6000/tcp", {"6000/tcp": [b("", "8080")]}),
    ("::6000", {"6000/tcp": [b("", "")]}),
    ("53/udp", {"53/udp": [b()]}),
    ("53:53/UDP", {"53/udp": [b("", "53")]}),            # the protocol is lower-cased
    ("80/", {"80/tcp": [b()]}),                            # an empty protocol is tcp (SplitProtoPort)
    ("0123:80", {"80/tcp": [b("", "123")]}),               # FormatUint: Docker normalises the number
    # IPv6: in brackets, and the legacy bare form (nat.splitParts joins all but the last two fields)
    ("[::1]:8080:80", {"80/tcp": [b("::1", "8080")]}),
    ("[::1]:8080:80/udp", {"80/udp": [b("::1", "8080")]}),
    ("[2001:4860:0:2001::68]::333", {"333/tcp": [b("2001:4860:0:2001::68", "")]}),
    ("::1:80:80", {"80/tcp": [b("::1", "80")]}),
    ("2001:4860:0:2001::68::333", {"333/tcp": [b("2001:4860:0:2001::68", "")]}),
    ("::::80", {"80/tcp": [b("::", "")]}),
])
def test_parse_publish_forms(spec, expected):
    assert parse_publish(spec) == expected


def test_parse_publish_ranges():
    # both sides ranges: one host port per container port, in order
    assert parse_publish("0.0.0.0:1234-1235:3333-3334/tcp") == {
        "3333/tcp": [b("0.0.0.0", "1234")], "3334/tcp": [b("0.0.0.0", "1235")]}
    assert parse_publish("8000-8002:80-82") == {
        "80/tcp": [b("", "8000")], "81/tcp": [b("", "8001")], "82/tcp": [b("", "8002")]}
    # a container range alone: each on a free host port
    assert parse_publish("1234-1236/udp") == {f"{p}/udp": [b()] for p in (1234, 1235, 1236)}
    # a host range for one container port: the range is kept, to pick a free port from
    assert parse_publish("8000-8009:80") == {"80/tcp": [b("", "8000-8009")]}
    assert parse_publish("127.0.0.1:8000-8009:80/udp") == {"80/udp": [b("127.0.0.1", "8000-8009")]}
    # a one-port range is a port
    assert parse_publish("8080-8080:80-80") == {"80/tcp": [b("", "8080")]}


@pytest.mark.parametrize("spec, message", [
    ("localhost:1234:1234/tcp", "invalid IP address: localhost"),
    ("localhost:1234-1236:1234-1236/tcp", "invalid IP address: localhost"),
    ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("[::1:8080:80", "invalid IP address: [::1"),
    ("8080:", "no port specified: 8080:<empty>"),
    ("127.0.0.1:8080:", "no port specified: 127.0.0.1:8080:<empty>"),
    ("", "no port specified: <empty>"),
    ("abc", "invalid containerPort: abc"),
    ("8080:abc", "invalid containerPort: abc"),
    ("192.168.1.100:-1:-1", "invalid containerPort: -1"),
    ("65536", "invalid containerPort: 65536"),
    ("82-80", "invalid containerPort: 82-80"),
    ("abc:80", "invalid hostPort: abc"),
    ("70000:80", "invalid hostPort: 70000"),
    ("8000-8001:80-82", "invalid ranges specified for container and host Ports: 80-82 and 8000-8001"),
    ("80/foo", "invalid proto: foo"),
])
def test_parse_publish_errors_in_dockers_words(spec, message):
    with pytest.raises(InvalidArgument) as e:
        parse_publish(spec)
    assert str(e.value) == message


def test_merge_bindings_and_port_key():
    assert merge_bindings(["8080:80", "127.0.0.1:8081:80", "53/udp", "9000-9001:90-91"]) == {
        "80/tcp": [b("", "8080"), b("127.0.0.1", "8081")],
        "53/udp": [b()],
        "90/tcp": [b("", "9000")],
        "91/tcp": [b("", "9001")],
    }
    assert merge_bindings([]) == {}
    assert port_key("80/udp") == (80, "udp")
    assert port_key("80") == (80, "tcp")


# -- parse_expose ----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    ("80", ["80/tcp"]),
    ("8080/tcp", ["8080/tcp"]),
    ("8080/udp", ["8080/udp"]),
    ("8080-8080/udp", ["8080/udp"]),
    ("8080-8082/tcp", ["8080/tcp", "8081/tcp", "8082/tcp"]),
    ("53/UDP", ["53/udp"]),
])
def test_parse_expose(spec, expected):
    assert parse_expose(spec) == expected


@pytest.mark.parametrize("spec, prefix", [
    (":", "invalid port format for --expose: :"),
    ("8080:9090", "invalid port format for --expose: 8080:9090"),
    ("/tcp", "invalid range format for --expose: /tcp, error: "),
    ("NaN/tcp", "invalid range format for --expose: NaN/tcp, error: "),
    ("8080-NaN/tcp", "invalid range format for --expose: 8080-NaN/tcp, error: "),
    ("80000", "invalid range format for --expose: 80000, error: "),
    ("1234567890-8080/tcp", "invalid range format for --expose: 1234567890-8080/tcp, error: "),
])
def test_parse_expose_errors_in_dockers_words(spec, prefix):
    with pytest.raises(InvalidArgument) as e:
        parse_expose(spec)
    assert str(e.value).startswith(prefix)


# -- ipam: subnets ---------------------------------------------------------------------------------
def test_default_pools_are_dockers():
    pools = list(ipam.default_pools())
    assert pools[0] == net("172.17.0.0/16") and pools[14] == net("172.31.0.0/16")
    assert pools[15] == net("192.168.0.0/20") and pools[-1] == net("192.168.240.0/20")
    assert len(pools) == 15 + 16


def test_pick_subnet_skips_routes_and_other_networks():
    assert ipam.pick_subnet([]) == net("172.17.0.0/16")
    # the host's LAN inside the first pool, another network on the second
    assert ipam.pick_subnet([net("172.17.5.0/24"), net("172.18.0.0/16")]) == net("172.19.0.0/16")
    # a wider route covering several pools
    assert ipam.pick_subnet([net("172.16.0.0/13")]) == net("172.24.0.0/16")
    # all of 172.16/12 taken: the 192.168 /20s, skipping a LAN in the first
    assert ipam.pick_subnet([net("172.16.0.0/12"), net("192.168.1.0/24")]) == net("192.168.16.0/20")
    # a default route overlaps everything and is ignored; routes elsewhere do not matter
    assert ipam.pick_subnet([net("0.0.0.0/0"), net("10.0.0.0/8"), net("192.0.2.0/24")]) == net("172.17.0.0/16")
    # IPv6 entries never clash with IPv4 pools
    assert ipam.pick_subnet([ipaddress.IPv6Network("fd00::/8")]) == net("172.17.0.0/16")


def test_pick_subnet_exhausted():
    with pytest.raises(Conflict) as e:
        ipam.pick_subnet([net("172.16.0.0/12"), net("192.168.0.0/16")])
    assert "non-overlapping IPv4 address pool" in str(e.value)


def test_check_subnet_overlap_refused():
    ipam.check_subnet(net("10.10.0.0/24"), [net("10.10.1.0/24"), net("172.17.0.0/16")])
    for clash in ("10.10.0.0/16", "10.10.0.128/25", "10.10.1.0/24"):
        with pytest.raises(Conflict) as e:
            ipam.check_subnet(net(clash), [net("10.10.1.0/24"), net("10.10.0.0/24")])
        assert str(e.value) == "Pool overlaps with other one on this address space"


def test_parse_subnet():
    assert ipam.parse_subnet("10.1.2.3/24") == net("10.1.2.0/24")  # host bits allowed, as Docker
    with pytest.raises(InvalidArgument) as e:
        ipam.parse_subnet("10.1.2.0/33")
    assert str(e.value) == "invalid subnet 10.1.2.0/33: invalid CIDR address: 10.1.2.0/33"
    with pytest.raises(InvalidArgument):
        ipam.parse_subnet("nonsense")


def test_gateway_for():
    assert ipam.gateway_for(net("10.5.0.0/16")) == "10.5.0.1"
    assert ipam.gateway_for(net("10.5.0.0/16"), "10.5.0.254") == "10.5.0.254"
    with pytest.raises(InvalidArgument) as e:
        ipam.gateway_for(net("10.5.0.0/16"), "10.6.0.1")
    assert str(e.value) == "no matching subnet for gateway 10.6.0.1"
    with pytest.raises(InvalidArgument):
        ipam.gateway_for(net("10.5.0.0/16"), "not-an-ip")


def test_check_ip_range():
    assert ipam.check_ip_range(net("10.5.0.0/16"), "") == ""
    assert ipam.check_ip_range(net("10.5.0.0/16"), "10.5.7.0/24") == "10.5.7.0/24"
    with pytest.raises(InvalidArgument) as e:
        ipam.check_ip_range(net("10.5.0.0/16"), "10.6.0.0/24")
    assert str(e.value) == "no matching subnet for range 10.6.0.0/24"


# -- ipam: addresses -------------------------------------------------------------------------------
def test_allocate_lowest_free():
    s = net("10.0.0.0/24")
    assert ipam.allocate(s, "10.0.0.1", []) == "10.0.0.2"
    assert ipam.allocate(s, "10.0.0.1", ["10.0.0.2", "10.0.0.3"]) == "10.0.0.4"
    assert ipam.allocate(s, "10.0.0.1", ["10.0.0.3"]) == "10.0.0.2"      # a freed address is reused
    assert ipam.allocate(s, "10.0.0.2", []) == "10.0.0.1"                # a gateway elsewhere
    used = [f"10.0.0.{i}" for i in range(2, 254)]
    assert ipam.allocate(s, "10.0.0.1", used) == "10.0.0.254"            # never .255 (broadcast)
    with pytest.raises(Conflict) as e:
        ipam.allocate(s, "10.0.0.1", [*used, "10.0.0.254"])
    assert "no available IPv4 addresses" in str(e.value)


def test_allocate_inside_ip_range():
    s = net("10.0.0.0/16")
    assert ipam.allocate(s, "10.0.0.1", [], "10.0.5.0/24") == "10.0.5.1"
    assert ipam.allocate(s, "10.0.0.1", ["10.0.5.1"], "10.0.5.0/24") == "10.0.5.2"
    # a range that holds the gateway skips it
    assert ipam.allocate(s, "10.0.0.1", [], "10.0.0.0/28") == "10.0.0.2"
    # tiny ranges: every address of the range is a candidate
    assert ipam.allocate(s, "10.0.0.1", [], "10.0.9.7/32") == "10.0.9.7"
    assert ipam.allocate(s, "10.0.0.1", ["10.0.9.6"], "10.0.9.6/31") == "10.0.9.7"
    with pytest.raises(Conflict):
        ipam.allocate(s, "10.0.0.1", ["10.0.9.7"], "10.0.9.7/32")


def test_check_static():
    s = net("10.0.0.0/24")
    assert ipam.check_static(s, "10.0.0.1", ["10.0.0.2"], "10.0.0.50") == "10.0.0.50"
    for taken in ("10.0.0.1", "10.0.0.2", "10.0.0.0", "10.0.0.255"):  # gateway, used, network, broadcast
        with pytest.raises(Conflict) as e:
            ipam.check_static(s, "10.0.0.1", ["10.0.0.2"], taken)
        assert str(e.value) == "Address already in use"
    with pytest.raises(InvalidArgument) as e:
        ipam.check_static(s, "10.0.0.1", [], "10.0.1.5")
    assert str(e.value) == "no configured subnet or ip-range contain the IP address 10.0.1.5"
    with pytest.raises(InvalidArgument) as e:
        ipam.check_static(s, "10.0.0.1", [], "10.0.0.300")
    assert str(e.value) == "invalid IPv4 address: 10.0.0.300"


def test_mac_for_is_docker_02_42_and_the_ip_bytes():
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"
    assert ipam.mac_for("10.255.1.254") == "02:42:0a:ff:01:fe"
    assert ipam.mac_for("192.168.16.3") == "02:42:c0:a8:10:03"


def test_check_mac():
    assert ipam.check_mac("92:d0:c6:0a:29:33") == "92:d0:c6:0a:29:33"
    assert ipam.check_mac("92:D0:C6:0A:29:33") == "92:d0:c6:0a:29:33"
    for bad in ("92:d0:c6:0a:29", "92:d0:c6:0a:29:33:44", "92:d0:c6:0a:29:3", "zz:d0:c6:0a:29:33", ""):
        with pytest.raises(InvalidArgument) as e:
            ipam.check_mac(bad)
        assert str(e.value) == f'invalid argument "{bad}" for "--mac-address" flag: {bad} is not a valid mac address'


# -- firewall --------------------------------------------------------------------------------------
def test_bridge_rules():
    assert firewall.bridge_rules("br-abc", internal=False) == [
        "-A DOCKYARD-ISOLATION-STAGE-1 -i br-abc ! -o br-abc -j DOCKYARD-ISOLATION-STAGE-2",
        "-A DOCKYARD-ISOLATION-STAGE-2 -o br-abc -j DROP",
    ]
    assert firewall.bridge_rules("br-int", internal=True) == [
        "-A DOCKYARD-ISOLATION-STAGE-1 -i br-int ! -o br-int -j DROP",
        "-A DOCKYARD-ISOLATION-STAGE-1 ! -i br-int -o br-int -j DROP",
    ]
    # the bridges named by a chain listing: those with rules of their own, once each
    listing = ["-N DOCKYARD-ISOLATION-STAGE-1", firewall.DNAT_RULE,
               *firewall.bridge_rules("br-a", False), *firewall.bridge_rules("br-b", True)]
    assert firewall._bridges(listing) == ["br-a", "br-b"]


# -- renderings ------------------------------------------------------------------------------------
def test_format_mapping_as_docker_ps():
    assert format_mapping(PortMapping("", 8080, 80)) == "0.0.0.0:8080->80/tcp"
    assert format_mapping(PortMapping("127.0.0.1", 5353, 53, "udp")) == "127.0.0.1:5353->53/udp"
    assert format_mapping(PortMapping("::1", 8080, 80)) == "[::1]:8080->80/tcp"
    assert PortMapping("", 1, 2, "udp").key == "2/udp"


def test_port_lines_as_docker_port():
    ms = [PortMapping("", 8080, 80), PortMapping("127.0.0.1", 8081, 80), PortMapping("", 5353, 53, "udp"),
          PortMapping("::1", 9090, 90)]
    assert port_lines(ms) == ["80/tcp -> 0.0.0.0:8080", "80/tcp -> 127.0.0.1:8081", "53/udp -> 0.0.0.0:5353",
                              "90/tcp -> [::1]:9090"]
    assert port_lines(ms, "80") == ["0.0.0.0:8080", "127.0.0.1:8081"]
    assert port_lines(ms, "80/tcp") == ["0.0.0.0:8080", "127.0.0.1:8081"]
    assert port_lines(ms, "53/udp") == ["0.0.0.0:5353"]
    assert port_lines(ms, "53") == []  # 53/tcp is not published
    assert port_lines(ms, "90") == ["[::1]:9090"]
    assert port_lines([]) == []
