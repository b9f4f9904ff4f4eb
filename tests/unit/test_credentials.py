"""~/.docker/config.json handling: auths with base64 "auth", credential helpers, 0600 files."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from dockyard.registry.auth.challenge import Credentials
from dockyard.remotes.credentials import CredentialStore, config_path, server_key


def test_server_keys_follow_docker() -> None:
    assert server_key("docker.io") == "https://index.docker.io/v1/"
    assert server_key("") == "https://index.docker.io/v1/"
    assert server_key("https://127.0.0.1:5000/v2/") == "127.0.0.1:5000"
    assert server_key("registry.example") == "registry.example"


def test_store_get_erase_round_trip_and_file_mode(tmp_path: Path) -> None:
    path = tmp_path / ".docker" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"auths": {"other:1": {"auth": base64.b64encode(b"x:y").decode()}},
                                "psFormat": "table {{.ID}}"}))
    store = CredentialStore(path)
    store.store("127.0.0.1:5000", Credentials("alice", "p:w"))
    doc = json.loads(path.read_text())
    assert base64.b64decode(doc["auths"]["127.0.0.1:5000"]["auth"]) == b"alice:p:w"
    assert doc["psFormat"] == "table {{.ID}}"                      # other settings are kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.get("127.0.0.1:5000") == Credentials("alice", "p:w")
    assert store.get("other:1") == Credentials("x", "y")
    assert store.get("nowhere") is None
    assert store.erase("127.0.0.1:5000") is True
    assert store.erase("127.0.0.1:5000") is False
    assert store.get("127.0.0.1:5000") is None


def test_identity_token(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"r": {"auth": base64.b64encode(b"u:").decode(), "identitytoken": "T"}}}))
    assert CredentialStore(path).get("r") == Credentials("u", "", "T")


def test_docker_config_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert config_path() == tmp_path / "config.json"
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path() == tmp_path / ".docker" / "config.json"


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake docker-credential-test keeping secrets in a JSON file: the store/get/erase protocol."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    db = tmp_path / "helper.json"
    helper = bin_dir / "docker-credential-test"
    helper.write_text(f"""#!/usr/bin/env python3
import json, os, sys
db = {str(db)!r}
data = json.load(open(db)) if os.path.exists(db) else {{}}
action, arg = sys.argv[1], sys.stdin.read()
if action == "store":
    d = json.loads(arg); data[d["ServerURL"]] = [d["Username"], d["Secret"]]
elif action == "get":
    if arg not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({{"ServerURL": arg, "Username": data[arg][0], "Secret": data[arg][1]}}))
elif action == "erase":
    if arg not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    del data[arg]
json.dump(data, open(db, "w"))
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credHelpers": {"helped:5000": "test"}}))
    store = CredentialStore(path)
    store.store("helped:5000", Credentials("bob", "hunter2"))
    assert "hunter2" not in path.read_text()
    assert json.loads(db.read_text()) == {"helped:5000": ["bob", "hunter2"]}
    assert store.get("helped:5000") == Credentials("bob", "hunter2")
    store.store("plain:1", Credentials("c", "d"))                 # no helper for this one: in the file
    assert "plain:1" in json.loads(path.read_text())["auths"]
    assert store.erase("helped:5000") is True
    assert store.get("helped:5000") is None
