"""The Docker Engine API (v1.43, ../shared/reference/docker-engine-api-v1.43.yaml) over the engine
facade, so that the docker CLI, docker-py and docker-compose drive dockyard.

- app.py          ``make_app(engine)``: version prefix (``/v1.NN/...`` and unversioned), version
                  negotiation, the error table (a dockyard error kind -> Docker's status code and
                  ``{"message": ...}``), and the routers below
- server.py       ``dockyard system service``: unix socket (root-only, 0660) and TCP (+ TLS client
                  verification), graceful shutdown
- streams.py      Docker's wire forms: JSON message streams (progress, build, events), the 8-byte
                  multiplexed stdout/stderr frames, hijacked connections (Upgrade: tcp) for attach
                  and exec start
- system.py       /_ping, /version, /info, /system/df, /events, /auth
- containers.py   /containers/... (create, json, stop, kill, restart, rm, logs, top, stats,
                  changes, archive, export, pause, rename, update, prune)
- attach.py       docker run's flow: attach (hijacked, parked until start), start, wait, resize;
                  the exits of containers this server started
- exec.py         /containers/{id}/exec, /exec/{id}/start|resize|json
- images.py       /images/... (json, create = pull/import, push, tag, delete, history, get, load,
                  prune), /commit, /build, /distribution/{name}/json
- volumes.py      /volumes/...
- networks.py     /networks/...

Every handler calls the engine facade (dockyard.engine.Engine) — never a driver directly — and runs
the facade's blocking calls in a worker thread (``await call(fn, ...)``), so one slow request never
blocks the others.  Request bodies become the engine's Options values at the edge; raw Docker JSON
never travels into the engine.
"""
