"""Docker volume plugins: discovery and the VolumeDriver protocol client.

A legacy (v1) Docker plugin is a process serving JSON over HTTP, found by name:

- a unix socket ``NAME.sock`` or ``NAME/NAME.sock`` (Docker looks in /run/docker/plugins);
- a spec file ``NAME.spec`` holding one URL (``unix:///path.sock`` or ``tcp://host:port``), or
  ``NAME.json`` (``{"Name": ..., "Addr": "https://host:port", "TLSConfig": {"CAFile": ...,
  "CertFile": ..., "KeyFile": ..., "InsecureSkipVerify": false}}``), in /etc/docker/plugins or
  /usr/lib/docker/plugins (also under ``NAME/``).

The directories searched are ``$DOCKYARD_PLUGIN_DIRS`` (colon-separated) when set, else Docker's
three; sockets anywhere win over spec files, as in Docker.  Every dockyard process finds the plugin
again by name (the exit command that unmounts runs in the environment conmon inherited from the
command that started the container, so keep ``DOCKYARD_PLUGIN_DIRS`` the same for both).

The protocol (docker/cli docs/extend/plugins_volume.md): every call is ``POST /<Method>`` with a
JSON body and a JSON answer whose non-empty ``"Err"`` is a failure::

    /Plugin.Activate         {}                    -> {"Implements": ["VolumeDriver"]}
    /VolumeDriver.Create     {"Name", "Opts"}      -> {"Err"}
    /VolumeDriver.Remove     {"Name"}              -> {"Err"}
    /VolumeDriver.Mount      {"Name", "ID"}        -> {"Mountpoint", "Err"}   ID = container id
    /VolumeDriver.Unmount    {"Name", "ID"}        -> {"Err"}
    /VolumeDriver.Path       {"Name"}              -> {"Mountpoint", "Err"}
    /VolumeDriver.Get        {"Name"}              -> {"Volume": {"Name", "Mountpoint", "CreatedAt", "Status"}, "Err"}
    /VolumeDriver.List       {}                    -> {"Volumes": [{"Name", "Mountpoint"}], "Err"}
    /VolumeDriver.Capabilities {}                  -> {"Capabilities": {"Scope": "local"|"global"}}

The plugin counts Mount/Unmount per ID itself.  Errors: a plugin's "Err" becomes
FailedPrecondition ``VolumeDriver.Mount: <Err>`` (NotFound for Get/Path of an unknown volume is
the plugin's own words); a plugin that cannot be reached is Unavailable.  Callers add the volume
name (the service does: ``create NAME: VolumeDriver.Create: ...``).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import stat
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from dockyard.volumes import Volume

DEFAULT_DIRS = ("/run/docker/plugins", "/etc/docker/plugins", "/usr/lib/docker/plugins")
PLUGIN_DIRS_ENV = "DOCKYARD_PLUGIN_DIRS"
ACCEPT = "application/vnd.docker.plugins.v1.2+json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(:[A-Za-z0-9_.-]+)?$")
TIMEOUT = 30.0


def plugin_dirs() -> list[Path]:
    env = os.environ.get(PLUGIN_DIRS_ENV)
    return [Path(p) for p in (env.split(":") if env else DEFAULT_DIRS) if p]


@dataclass(frozen=True)
class TLSConfig:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class PluginAddress:
    """Where a plugin listens: ``scheme`` unix | http | https; ``location`` a socket path or host:port."""

    name: str
    scheme: str
    location: str
    tls: TLSConfig | None = None

    def __str__(self) -> str:
        return f"{self.scheme}://{self.location}"


def _is_socket(p: Path) -> bool:
    try:
        return stat.S_ISSOCK(p.stat().st_mode)
    except OSError:
        return False


def parse_address(name: str, url: str, tls: TLSConfig | None = None) -> PluginAddress:
    """A spec file's URL (unix://, tcp://, http://, https://) as a PluginAddress."""
    u = urllib.parse.urlparse(url.strip())
    if u.scheme == "unix":
        path = (u.netloc + u.path) if u.netloc else u.path
        if not path:
            raise InvalidArgument(f"plugin {name}: invalid address {url!r}")
        return PluginAddress(name, "unix", path)
    if u.scheme in ("tcp", "http", "https"):
        if not u.netloc:
            raise InvalidArgument(f"plugin {name}: invalid address {url!r}")
        scheme = "https" if u.scheme == "https" or (u.scheme == "tcp" and tls is not None) else "http"
        return PluginAddress(name, scheme, u.netloc, tls)
    raise InvalidArgument(f"plugin {name}: unsupported address {url!r} (want unix:// or tcp://)")


def find_plugin(name: str, dirs: list[Path] | None = None) -> PluginAddress | None:
    """Look ``name`` up as Docker does (sockets first, then .spec, then .json); None if absent."""
    if not _NAME.match(name):
        return None
    dirs = plugin_dirs() if dirs is None else dirs
    base = name.split(":", 1)[0] if name.endswith(":latest") else name
    for d in dirs:
        for cand in (d / f"{base}.sock", d / base / f"{base}.sock"):
            if _is_socket(cand):
                return PluginAddress(name, "unix", str(cand))
    for d in dirs:
        for ext in ("spec", "json"):
            for cand in (d / f"{base}.{ext}", d / base / f"{base}.{ext}"):
                try:
                    text = cand.read_text()
                except OSError:
                    continue
                if ext == "spec":
                    return parse_address(name, text)
                try:
                    doc = json.loads(text)
                except ValueError as exc:
                    raise InvalidArgument(f"plugin {name}: {cand}: {exc}") from None
                t = doc.get("TLSConfig")
                tls = TLSConfig(t.get("CAFile", ""), t.get("CertFile", ""), t.get("KeyFile", ""),
                                bool(t.get("InsecureSkipVerify"))) if isinstance(t, dict) else None
                return parse_address(name, str(doc.get("Addr", "")), tls)
    return None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


class PluginClient:
    """JSON-over-HTTP calls to one plugin.  One connection per call (plugins are local and calls rare)."""

    def __init__(self, address: PluginAddress, timeout: float = TIMEOUT) -> None:
        self.address = address
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        a = self.address
        if a.scheme == "unix":
            return _UnixConnection(a.location, self.timeout)
        if a.scheme == "https":
            ctx = ssl.create_default_context(cafile=(a.tls.ca_file or None) if a.tls else None)
            if a.tls and a.tls.cert_file:
                ctx.load_cert_chain(a.tls.cert_file, a.tls.key_file or None)
            if a.tls and a.tls.insecure_skip_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(a.location, timeout=self.timeout, context=ctx)
        return http.client.HTTPConnection(a.location, timeout=self.timeout)

    def call(self, method: str, body: Mapping[str, Any] | None = None, *, retries: int = 3) -> dict[str, Any]:
        """POST ``/method`` and return the decoded answer; raises on transport errors and on "Err"."""
        data = json.dumps(dict(body or {})).encode()
        attempt = 0
        while True:
            conn = self._connection()
            try:
                conn.request("POST", f"/{method}", body=data,
                             headers={"Accept": ACCEPT, "Content-Type": "application/json"})
                resp = conn.getresponse()
                status, raw = resp.status, resp.read()
                break
            except (ConnectionRefusedError, FileNotFoundError) as exc:
                attempt += 1
                if attempt >= retries:  # a plugin restarting gets a moment, as Docker's backoff gives
                    raise Unavailable(f"{method}: cannot reach plugin {self.address.name} at {self.address}: "
                                      f"{exc.strerror or exc}") from None
                time.sleep(0.2 * attempt)
            except (OSError, http.client.HTTPException) as exc:
                why = "timed out" if isinstance(exc, TimeoutError) else (getattr(exc, "strerror", None) or str(exc)
                                                                         or type(exc).__name__)
                raise Unavailable(f"{method}: plugin {self.address.name} at {self.address}: {why}") from None
            finally:
                conn.close()
        try:
            doc = json.loads(raw) if raw.strip() else {}
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            text = raw.decode(errors="replace").strip()[:200]
            raise FailedPrecondition(f"{method}: plugin {self.address.name} answered {status}: {text}")
        if doc.get("Err"):
            raise FailedPrecondition(f"{method}: {doc['Err']}")
        if status == 404:
            raise NotImplementedError(method)
        if status != 200:
            raise FailedPrecondition(f"{method}: plugin {self.address.name} answered {status}")
        return doc


class PluginDriver:
    """A VolumeDriver backed by a Docker volume plugin (see the module docstring)."""

    def __init__(self, name: str, address: PluginAddress, timeout: float = TIMEOUT) -> None:
        self.name = name
        self.client = PluginClient(address, timeout)
        self._caps: dict[str, str] | None = None

    @classmethod
    def activate(cls, name: str, address: PluginAddress) -> PluginDriver:
        """Handshake: the plugin must implement VolumeDriver (Unavailable/InvalidArgument if not)."""
        try:
            doc = PluginDriver(name, address).client.call("Plugin.Activate")
        except NotImplementedError:
            doc = {}
        if "VolumeDriver" not in (doc.get("Implements") or []):
            raise InvalidArgument(f"error looking up volume plugin {name}: plugin {name!r} does not implement "
                                  "the VolumeDriver protocol")
        return cls(name, address)

    def _call(self, method: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        try:
            return self.client.call(f"VolumeDriver.{method}", body)
        except NotImplementedError:
            raise FailedPrecondition(f"VolumeDriver.{method}: not implemented by plugin {self.name}") from None

    def create(self, name: str, opts: Mapping[str, str]) -> Volume:
        self._call("Create", {"Name": name, "Opts": dict(opts)})
        return Volume(name=name, driver=self.name, mountpoint="", options=dict(opts), created=time.time(),
                      scope=self.capabilities().get("Scope", "local"))

    def mount(self, name: str, ref: str) -> Path:
        doc = self._call("Mount", {"Name": name, "ID": ref})
        mp = doc.get("Mountpoint") or ""
        if not mp or not mp.startswith("/"):
            raise FailedPrecondition(f"VolumeDriver.Mount: plugin {self.name} returned no absolute mountpoint "
                                     f"({mp!r})")
        return Path(mp)

    def unmount(self, name: str, ref: str) -> None:
        self._call("Unmount", {"Name": name, "ID": ref})

    def remove(self, name: str) -> None:
        self._call("Remove", {"Name": name})

    def path(self, name: str) -> Path | None:
        mp = self._call("Path", {"Name": name}).get("Mountpoint") or ""
        return Path(mp) if mp else None

    def get(self, name: str) -> Volume:
        try:
            doc = self._call("Get", {"Name": name})
        except FailedPrecondition as exc:
            raise NotFound(str(exc)) from None
        v = doc.get("Volume") or {}
        status: dict[str, object] = v["Status"] if isinstance(v.get("Status"), dict) else {}
        return Volume(name=v.get("Name") or name, driver=self.name, mountpoint=v.get("Mountpoint") or "",
                      status=status, scope=self.capabilities().get("Scope", "local"))

    def list(self) -> list[Volume]:
        doc = self._call("List")
        return [Volume(name=str(v.get("Name")), driver=self.name, mountpoint=str(v.get("Mountpoint") or ""))
                for v in doc.get("Volumes") or [] if isinstance(v, dict) and v.get("Name")]

    def capabilities(self) -> dict[str, str]:
        if self._caps is None:
            try:
                caps = self.client.call("VolumeDriver.Capabilities").get("Capabilities") or {}
            except (NotImplementedError, FailedPrecondition):
                caps = {}
            scope = str(caps["Scope"]) if caps.get("Scope") in ("local", "global") else "local"
            self._caps = {"Scope": scope}
        return self._caps
