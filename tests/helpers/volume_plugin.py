"""A small Docker volume plugin for the tests: the VolumeDriver protocol over a directory.

Run as ``python volume_plugin.py --socket PATH --dir DIR``.  Each volume is ``DIR/volumes/<name>``;
``Mount`` returns that directory.  Every call is appended to ``DIR/calls.jsonl`` as
``{"method": ..., "body": ...}`` so tests can check what dockyard asked (e.g. that Unmount came at
exit).  Failures are injected through the volume's own options, so one plugin serves every test:

    -o fail=create   Create answers {"Err": "injected create failure"}
    -o fail=mount    Mount answers {"Err": "injected mount failure"}
    -o fail=unmount  Unmount answers an Err
    -o fail=remove   Remove answers an Err

Mount/Unmount are counted per ID, as a real plugin must (``DIR/state.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

LOCK = threading.Lock()


class Plugin:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "volumes").mkdir(parents=True, exist_ok=True)
        self.state_path = root / "state.json"
        self.calls = root / "calls.jsonl"

    def _state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict) -> None:
        self.state_path.write_text(json.dumps(state))

    def handle(self, method: str, body: dict) -> dict:
        with LOCK:
            with self.calls.open("a") as f:
                f.write(json.dumps({"method": method, "body": body, "time": time.time()}) + "\n")
            state = self._state()
            out = self._dispatch(method, body, state)
            self._save(state)
            return out

    def _dispatch(self, method: str, body: dict, state: dict) -> dict:
        name = body.get("Name", "")
        vol = state.get(name)
        path = self.root / "volumes" / name
        if method == "Plugin.Activate":
            return {"Implements": ["VolumeDriver"]}
        if method == "VolumeDriver.Capabilities":
            return {"Capabilities": {"Scope": "local"}}
        if method == "VolumeDriver.List":
            return {"Err": "", "Volumes": [{"Name": n, "Mountpoint": str(self.root / "volumes" / n)}
                                           for n in sorted(state)]}
        if method == "VolumeDriver.Create":
            opts = body.get("Opts") or {}
            if opts.get("fail") == "create":
                return {"Err": "injected create failure"}
            path.mkdir(exist_ok=True)
            state[name] = {"opts": opts, "mounts": [], "created": time.time()}
            return {"Err": ""}
        if vol is None:
            return {"Err": f"no such volume: {name}"}
        fail = vol["opts"].get("fail")
        if method == "VolumeDriver.Remove":
            if fail == "remove":
                return {"Err": "injected remove failure"}
            if vol["mounts"]:
                return {"Err": f"volume {name} is mounted"}
            shutil.rmtree(path, ignore_errors=True)
            del state[name]
            return {"Err": ""}
        if method == "VolumeDriver.Mount":
            if fail == "mount":
                return {"Err": "injected mount failure"}
            if body.get("ID", "") not in vol["mounts"]:  # one count per caller ID
                vol["mounts"].append(body.get("ID", ""))
            return {"Err": "", "Mountpoint": str(path)}
        if method == "VolumeDriver.Unmount":
            if fail == "unmount":
                return {"Err": "injected unmount failure"}
            if body.get("ID", "") in vol["mounts"]:
                vol["mounts"].remove(body.get("ID", ""))
            return {"Err": ""}
        if method == "VolumeDriver.Path":
            return {"Err": "", "Mountpoint": str(path) if vol["mounts"] else ""}
        if method == "VolumeDriver.Get":
            return {"Err": "", "Volume": {"Name": name, "Mountpoint": str(path) if vol["mounts"] else "",
                                          "Status": {"mounts": len(vol["mounts"])}}}
        return {"Err": f"unknown method {method}"}


class Handler(BaseHTTPRequestHandler):
    plugin: Plugin

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = {}
        method = self.path.lstrip("/")
        if not (method == "Plugin.Activate" or method.startswith("VolumeDriver.")):
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(self.plugin.handle(method, body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass

    def address_string(self) -> str:  # a unix socket peer has no host
        return "unix"


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    Handler.plugin = Plugin(Path(a.dir))
    if os.path.exists(a.socket):
        os.unlink(a.socket)
    with Server(a.socket, Handler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
