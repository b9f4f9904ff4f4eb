"""Registry credentials stored as Docker stores them, so docker and dockyard share logins.

``~/.docker/config.json`` (or ``$DOCKER_CONFIG/config.json``)::

    {"auths": {"127.0.0.1:5000": {"auth": "<base64 user:password>"}},
     "credsStore": "pass",                        # optional: a helper for every registry
     "credHelpers": {"gcr.io": "gcloud"}}         # optional: a helper per registry

A helper is ``docker-credential-NAME`` speaking the JSON protocol on stdin/stdout (``get`` takes the
server URL and answers ``{"Username", "Secret"}``; ``store`` takes ``{"ServerURL", "Username",
"Secret"}``; ``erase`` takes the URL).  The file holds secrets, so it is written 0600 via a temp file
and a rename: a crash never leaves a half-written config.  Docker Hub is keyed by its legacy URL
``https://index.docker.io/v1/``, as the docker CLI does.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidArgument, NotFound, Unavailable
from dockyard.registry.auth.challenge import Credentials

DOCKER_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}
DOCKER_HUB_KEY = "https://index.docker.io/v1/"


def server_key(server: str) -> str:
    """The key under which ``auths`` lists a registry: its host[:port], Docker Hub's legacy URL."""
    host = server.strip()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.split("/", 1)[0]
    if not host or host in DOCKER_HUB_HOSTS:
        return DOCKER_HUB_KEY
    return host


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


class CredentialStore:
    """Read, store and erase logins in a Docker config file (and its credential helpers)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_path()

    # -- file ----------------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise InvalidArgument(f"{self.path}: invalid JSON: {exc}") from exc
        return doc if isinstance(doc, dict) else {}

    def _write(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent="\t")
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def _helper(self, doc: dict[str, Any], key: str) -> str | None:
        helpers = doc.get("credHelpers") or {}
        return helpers.get(key) or doc.get("credsStore") or None

    # -- the three operations ------------------------------------------------------------------
    def get(self, server: str) -> Credentials | None:
        """The stored login for ``server``, or None (anonymous)."""
        key = server_key(server)
        doc = self._read()
        helper = self._helper(doc, key)
        if helper:
            return _helper_get(helper, key)
        entry = (doc.get("auths") or {}).get(key) or {}
        if entry.get("identitytoken"):
            user = _decode_auth(entry["auth"])[0] if entry.get("auth") else ""
            return Credentials(user, "", entry["identitytoken"])
        if entry.get("auth"):
            user, password = _decode_auth(entry["auth"])
            return Credentials(user, password)
        if entry.get("username"):
            return Credentials(entry["username"], entry.get("password", ""))
        return None

    def store(self, server: str, creds: Credentials) -> None:
        key = server_key(server)
        doc = self._read()
        helper = self._helper(doc, key)
        auths = doc.setdefault("auths", {})
        if helper:
            _run_helper(helper, "store", json.dumps(
                {"ServerURL": key, "Username": creds.username, "Secret": creds.password}))
            auths[key] = {}
        else:
            raw = f"{creds.username}:{creds.password}".encode()
            auths[key] = {"auth": base64.b64encode(raw).decode()}
        self._write(doc)

    def erase(self, server: str) -> bool:
        """Remove the login; False when there was none (Docker then says "Not logged in")."""
        key = server_key(server)
        doc = self._read()
        auths = doc.get("auths") or {}
        helper = self._helper(doc, key)
        found = key in auths
        if helper:
            try:
                _run_helper(helper, "erase", key)
                found = True
            except NotFound:
                pass
        if key in auths:
            del auths[key]
            self._write(doc)
        return found


def _decode_auth(value: str) -> tuple[str, str]:
    try:
        text = base64.b64decode(value, validate=False).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid auth configuration file: {exc}") from exc
    user, sep, password = text.partition(":")
    if not sep:
        raise InvalidArgument("invalid auth configuration file")
    return user, password


def _run_helper(name: str, action: str, stdin: str) -> str:
    prog = f"docker-credential-{name}"
    try:
        p = subprocess.run([prog, action], input=stdin.encode(), capture_output=True, timeout=60, check=False)
    except FileNotFoundError as exc:
        raise Unavailable(f"error getting credentials - err: exec: \"{prog}\": executable file not found in $PATH") from exc
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode != 0:
        if "credentials not found" in out.lower():
            raise NotFound(out)
        raise Unavailable(f"error {action} credentials - {prog}: {out or p.stderr.decode(errors='replace').strip()}")
    return out


def _helper_get(helper: str, key: str) -> Credentials | None:
    try:
        out = _run_helper(helper, "get", key)
    except NotFound:
        return None
    try:
        doc = json.loads(out)
    except ValueError as exc:
        raise Unavailable(f"credential helper docker-credential-{helper}: invalid answer") from exc
    user, secret = doc.get("Username", ""), doc.get("Secret", "")
    if user == "<token>":
        return Credentials("", "", secret)
    return Credentials(user, secret)
