"""The ``azureblob`` volume driver (alias ``azurefile``): a volume whose files live in a blob container.

Creating one::

    dockyard volume create --driver azureblob --name v \\
        -o storage_account_name=ACCOUNT -o storage_account_key=KEY -o container=CONTAINER \\
        [-o endpoint=https://ACCOUNT.blob.core.chinacloudapi.cn | http://127.0.0.1:10000/devstoreaccount1]
    dockyard volume create --driver azurefile --name v -o share_name=CONTAINER -o storage_account_name=... \\
        -o storage_account_key=...       (the spelling of Docker tutorials: share_name names the container)

Semantics (what a container sees):

- **A local cache is what containers mount**: ``<state>/<name>/_data`` (layout in
  :mod:`dockyard.volumes.azuresync`).  Reads and writes run at local disk speed.
- **On the first mount** the blob container's files are brought in (a two-way sync: downloads are
  streamed to disk, never held in memory, so files of any size work), and a sync agent process
  starts: it uploads every file **closed after writing** within about a second, and propagates
  deletes and renames (a rename is a server-side copy).  What a killed container wrote and closed is
  uploaded -- the kernel closes its files -- so SIGKILL loses nothing that reached the cache.
- **The last unmount and ``volume rm`` flush**: the agent finishes its queue and stops, then every
  local change not yet uploaded is pushed.  ``volume rm`` removes the local cache and the record but
  never the blobs (as Docker's azurefile driver keeps the share).
- **Several dockyard roots** (or hosts) mounting one blob container see each other's files after a
  sync: ``dockyard volume sync NAME`` (:meth:`AzureBlobDriver.sync`) runs a two-way sync now, and every
  first mount runs one.  Conflicts: the newer modification time wins.  A file deleted on one side and
  unchanged on the other is deleted.
- Not kept: empty directories, symlinks and special files, ownership and permissions (files arrive
  as root-owned 0644 files).
- **Credentials**: the key is stored in ``credentials.json`` readable by root only (0600) and nowhere
  else; ``get`` shows it as ``********``; errors and logs never contain it.
- **Errors**: a bad option -> InvalidArgument naming it; the endpoint unreachable or refusing the
  credentials -> Unavailable naming the volume, the endpoint and the cause.  A create that failed
  leaves nothing behind; a mount that failed records no reference.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import concurrent.futures
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from dockyard.errors import DockyardError, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from dockyard.volumes import Volume
from dockyard.volumes.azuresync import VolumeSync, open_store, sync_lock
from dockyard.volumes.local import NAME_RE, LocalDriver, validate_name

MASK = "********"                     # as the volume service masks secrets
OPTIONS = ("storage_account_name", "storage_account_key", "container", "share_name", "endpoint")
CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
AGENT_START_TIMEOUT = 30.0
AGENT_STOP_TIMEOUT = 900.0            # the agent may be uploading a large file when told to stop

T = TypeVar("T")


def parse_options(name: str, opts: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """Validated (config, key) from ``-o`` options; InvalidArgument names the option (never its value
    when it is the key)."""
    for k in opts:
        if k not in OPTIONS:
            raise InvalidArgument(f'invalid option: "{k}" (azureblob takes {", ".join(OPTIONS)})')
    account, key = opts.get("storage_account_name", ""), opts.get("storage_account_key", "")
    container = opts.get("container") or opts.get("share_name") or ""
    if opts.get("container") and opts.get("share_name") and opts["container"] != opts["share_name"]:
        raise InvalidArgument("options container and share_name name different blob containers")
    for opt, value in (("storage_account_name", account), ("storage_account_key", key),
                       ("container (or share_name)", container)):
        if not value:
            raise InvalidArgument(f'missing required option: "{opt}"')
    if not re.fullmatch(r"[a-z0-9]{3,24}", account):
        raise InvalidArgument(f"invalid storage_account_name {account!r}: 3-24 lower-case letters and digits")
    try:
        base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument("invalid storage_account_key: not base64") from None
    if not CONTAINER_RE.match(container):
        raise InvalidArgument(f"invalid container name {container!r}: 3-63 lower-case letters, digits and "
                              "single hyphens, starting and ending with a letter or digit")
    endpoint = opts.get("endpoint") or f"https://{account}.blob.core.windows.net"
    url = urlparse(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
        raise InvalidArgument(f"invalid endpoint {endpoint!r}: an http(s) URL of the blob service")
    return {"account": account, "container": container, "endpoint": endpoint.rstrip("/")}, key


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, also when this thread already runs an
    event loop (the Engine API server calls drivers from its handlers)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class AzureBlobDriver:
    """Volumes backed by blob containers, with their state under ``root``."""

    name = "azureblob"

    def __init__(self, root: Path, *, python: str = sys.executable) -> None:
        self.root = Path(root)
        self.python = python

    # -- paths and locks ----------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        if not NAME_RE.match(name):
            raise NotFound(f"no such volume: {name}")
        return self.root / name

    def path(self, name: str) -> Path | None:
        return self._dir(name) / "_data"

    @contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        d = self._dir(name)
        if not (d / "volume.json").is_file():
            raise NotFound(f"no such volume: {name}")
        fd = os.open(d / "lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield d
        finally:
            os.close(fd)

    def _config(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self._dir(name) / "volume.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"no such volume: {name}") from None
        except (OSError, ValueError) as exc:
            raise FailedPrecondition(f"volume {name}: unreadable configuration: {exc}") from exc

    # -- lifecycle ----------------------------------------------------------------------------

    def create(self, name: str, opts: Mapping[str, str]) -> Volume:
        """Check the options, prove the endpoint answers (creating the blob container if needed),
        then record the volume.  Built in a temp directory renamed into place: a failure leaves
        nothing.  An existing volume of that name is returned as it is."""
        validate_name(name)
        cfg, key = parse_options(name, opts)
        if (self._dir(name) / "volume.json").is_file():
            return self.get(name)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o701)
        tmp = self.root / f".{name}.creating-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(mode=0o701)
            (tmp / "_data").mkdir(mode=0o755)
            fd = os.open(tmp / "credentials.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"storage_account_key": key}, f)
            shown = {k: (MASK if k == "storage_account_key" else v) for k, v in opts.items()}
            (tmp / "volume.json").write_text(json.dumps({**cfg, "options": shown, "created": time.time()}))
            _run(self._check(tmp, name))
            try:
                tmp.rename(self._dir(name))
            except OSError:                   # created meanwhile by another process: theirs stands
                if not (self._dir(name) / "volume.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.get(name)

    async def _check(self, vol: Path, name: str) -> None:
        store = open_store(vol, retries=1, connection_timeout=10, read_timeout=30)
        try:
            await store.ensure_container()
        except DockyardError as exc:
            raise Unavailable(f"volume {name}: {exc}") from None
        finally:
            await store.close()

    def mount(self, name: str, ref: str) -> Path:
        """Add ``ref``; the first one (or one finding the agent dead) starts the agent and syncs.
        Raises Unavailable (nothing recorded, agent stopped) when the sync fails."""
        with self._locked(name) as d:
            refs = self._refs(d)
            if not refs or self._agent_pid(d) is None:
                self._start_agent(name, d)
                try:
                    self._sync(name, d, "both")
                except DockyardError:
                    if not refs:
                        self._stop_agent(d)
                    raise
            refs[ref] = 1
            self._write_refs(d, refs)
            return d / "_data"

    def unmount(self, name: str, ref: str) -> None:
        """Drop ``ref``; the last one stops the agent (which drains its queue) and flushes the rest.
        Unavailable when the flush fails (the files stay in the cache for the next sync)."""
        try:
            with self._locked(name) as d:
                refs = self._refs(d)
                refs.pop(ref, None)
                self._write_refs(d, refs)
                if not refs:
                    self._stop_agent(d)
                    self._sync(name, d, "push")
        except NotFound:
            return

    def remove(self, name: str) -> None:
        """Flush, then delete the local cache and record (the blobs stay).  FailedPrecondition while
        mounted; Unavailable, and nothing removed, when local changes cannot be flushed."""
        with self._locked(name) as d:
            if self._refs(d):
                raise FailedPrecondition(f"volume {name} is in use")
            self._stop_agent(d)
            self._sync(name, d, "push")
            doomed = self.root / f".{name}.removing-{uuid.uuid4().hex[:8]}"
            d.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def sync(self, name: str) -> dict[str, int]:
        """A two-way sync now (``dockyard volume sync NAME``); returns what it did per kind."""
        with self._locked(name) as d:
            return self._sync(name, d, "both")

    def _sync(self, name: str, d: Path, mode: str) -> dict[str, int]:
        async def go() -> dict[str, int]:
            store = open_store(d)
            try:
                with sync_lock(d):
                    vs = VolumeSync(d, store)
                    vs.load()
                    try:
                        return await vs.full_sync(mode)
                    finally:
                        vs.save()
            finally:
                await store.close()
        try:
            counts = _run(go())
        except DockyardError as exc:
            raise Unavailable(f"volume {name}: sync failed: {exc}") from None
        cfg = self._config(name)
        cfg["last_sync"] = time.time()
        tmp = d / "volume.json.tmp"
        tmp.write_text(json.dumps(cfg))
        tmp.replace(d / "volume.json")
        return counts

    # -- the agent ----------------------------------------------------------------------------

    def _agent_pid(self, d: Path) -> int | None:
        """The running agent of this volume, if any (checked by its command line, not just a pid)."""
        try:
            pid = int((d / "agent.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError):
            return None
        wanted = [b"dockyard.volumes.azuresync", os.fsencode(d.name)]
        if state == "Z" or not all(w in cmdline for w in wanted):
            return None
        return pid

    def _start_agent(self, name: str, d: Path) -> None:
        if self._agent_pid(d) is not None:
            return
        (d / "agent.pid").unlink(missing_ok=True)
        with open(d / "sync.log", "ab") as log:
            os.chmod(d / "sync.log", 0o600)
            launcher = subprocess.run(
                [self.python, "-m", "dockyard.volumes.azuresync", "--state", str(self.root.resolve()),
                 "--volume", name, "--detach"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                timeout=AGENT_START_TIMEOUT, check=False)
        deadline = time.monotonic() + AGENT_START_TIMEOUT
        while time.monotonic() < deadline and launcher.returncode == 0:
            if self._agent_pid(d) is not None:
                return
            time.sleep(0.05)
        tail = (d / "sync.log").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise Unavailable(f"volume {name}: the sync agent did not start: {tail[0]}")

    def _stop_agent(self, d: Path) -> None:
        pid = self._agent_pid(d)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + AGENT_STOP_TIMEOUT
        while self._agent_pid(d) == pid and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._agent_pid(d) == pid:
            os.kill(pid, signal.SIGKILL)        # the flush that follows pushes what it left

    # -- queries ------------------------------------------------------------------------------

    def get(self, name: str) -> Volume:
        cfg = self._config(name)
        d = self._dir(name)
        pid = self._agent_pid(d)
        status: dict[str, object] = {
            "endpoint": cfg["endpoint"], "account": cfg["account"], "container": cfg["container"],
            "agent": f"running (pid {pid})" if pid else "stopped",
        }
        if cfg.get("last_sync"):
            status["last_sync"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cfg["last_sync"]))
        options = dict(cfg.get("options", {}))
        options["storage_account_key"] = MASK
        return Volume(name=name, driver=self.name, mountpoint=str(d / "_data"), options=options,
                      created=cfg.get("created", 0.0), status=status)

    def list(self) -> list[Volume]:
        if not self.root.is_dir():
            return []
        return [self.get(p.name) for p in sorted(self.root.iterdir())
                if NAME_RE.match(p.name) and (p / "volume.json").is_file()]

    def capabilities(self) -> dict[str, str]:
        return {"Scope": "local"}

    def refs(self, name: str) -> builtins.list[str]:   # "list" here would be the method above
        return sorted(self._refs(self._dir(name)))

    def agent_pid(self, name: str) -> int | None:
        """The pid of the volume's sync agent, if running (tests and diagnostics)."""
        return self._agent_pid(self._dir(name))

    _refs = staticmethod(LocalDriver._refs)            # the same mounts.json ref counts as local
    _write_refs = staticmethod(LocalDriver._write_refs)
