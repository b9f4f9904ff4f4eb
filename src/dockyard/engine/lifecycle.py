"""How a container moves between states, shared by every dockyard process.

- prepare: the container's writable snapshot on the image, and its /etc/hostname, hosts, resolv.conf.
- start: mount the rootfs, write the OCI config, hand the container to a new conmon (which outlives
  us), ``runc start``; spawn a health-check monitor when the container has a health check.
- exit: conmon runs ``dockyard system container-exited ID GEN``; :meth:`Lifecycle.container_exited`
  records the exit once (conditional on the generation), tears down, and applies the restart policy.
- reconcile: a container whose monitor died is found by asking runc; its exit is recorded then.

Locking: lifecycle changes of one container take its flock (:meth:`ContainerStore.locked`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal as signals
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.containers.store import ACTIVE, RUNNING, ContainerRecord, ContainerStore
from dockyard.errors import DockyardError, FailedPrecondition, NotFound
from dockyard.snapshots.mount import Mount, is_mounted, mount_all, unmount

if TYPE_CHECKING:
    from dockyard.engine import Engine

HOSTS_BASE = (
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
)
UNKNOWN_EXIT = 255


def _init_path() -> str:
    """--init: Debian's catatonit (podman's choice), else tini."""
    import shutil

    for name in ("catatonit", "tini"):
        path = shutil.which(name)
        if path:
            return path
    raise FailedPrecondition("--init needs catatonit or tini (apt-get install catatonit)")


def runtime_exit_code(message: str) -> int:
    """Docker's exit codes for a process that could not be started: 127 not found, 126 not executable."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127
    if "permission denied" in low or "exec format error" in low:
        return 126
    return 125


class Lifecycle:
    def __init__(self, engine: Engine, store: ContainerStore) -> None:
        self.engine = engine
        self.store = store

    @cached_property
    def runtime(self):
        from dockyard.runtime.runc import RuncRuntime

        return RuncRuntime(self.engine.root / "runc")

    # -- paths ---------------------------------------------------------------------------------
    def bundle(self, cid: str) -> Path:
        return self.store.dir(cid) / "bundle"

    def rootfs(self, cid: str) -> Path:
        return self.bundle(cid) / "rootfs"

    def log_path(self, cid: str) -> Path:
        return self.store.dir(cid) / "ctr.log"

    def exit_dir(self, cid: str) -> Path:
        return self.store.dir(cid) / "exits"

    def cgroups_path(self, cid: str) -> str:
        return f"/dockyard/{cid}"

    # -- prepare -------------------------------------------------------------------------------
    def prepare(self, rec: ContainerRecord) -> None:
        d = self.store.dir(rec.id)
        for sub in ("bundle/rootfs", "exits", "persist"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        parent = self.engine.image_store.top_snapshot(rec.image_id)
        self.engine.snapshotter.prepare(rec.id, parent)
        self.write_etc_files(rec)
        # Resolve the user now so a bad -u fails at create time, with nothing left behind.  The
        # rootfs stays mounted for the start that usually follows (destroy unmounts it).
        mount_all(self.rootfs_mounts(rec), self.rootfs(rec.id))
        self.resolve_user(rec)

    def write_etc_files(self, rec: ContainerRecord) -> None:
        spec = rec.spec
        d = self.store.dir(rec.id)
        (d / "hostname").write_text(spec.hostname + "\n")
        hosts = HOSTS_BASE
        if spec.network_mode == "host":  # the host's own /etc/hosts, as Docker gives host-mode containers
            try:
                hosts = Path("/etc/hosts").read_text()
                hosts += "" if hosts.endswith("\n") else "\n"
            except OSError:
                pass
        own_ips = self.engine.networks.host_entries(rec)
        for entry in spec.extra_hosts:
            name, _, ip = entry.partition(":") if entry.count(":") == 1 else entry.partition("=")
            if ip == "host-gateway":
                # The host as seen from the container: its network's gateway (host mode: loopback).
                ip = self.engine.networks.gateway(rec) or "127.0.0.1"
            hosts += f"{ip}\t{name}\n"
        names = spec.hostname + (f".{spec.domainname}\t{spec.hostname}" if spec.domainname else "")
        for ip in own_ips[:1]:
            hosts += f"{ip}\t{names}\n"
        (d / "hosts").write_text(hosts)
        (d / "resolv.conf").write_text(self._resolv_conf(rec))

    def _resolv_conf(self, rec: ContainerRecord) -> str:
        spec = rec.spec
        try:
            host = Path("/etc/resolv.conf").read_text()
        except OSError:
            host = ""
        servers, search, options = [], [], []
        for line in host.splitlines():
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if parts[0] == "nameserver" and len(parts) > 1:
                servers.append(parts[1])
            elif parts[0] in ("search", "domain"):
                search = parts[1:]
            elif parts[0] == "options":
                options += parts[1:]
        if spec.network_mode != "host":
            # Docker drops loopback resolvers the container cannot reach, falling back to public ones.
            servers = [s for s in servers if not s.startswith("127.") and s != "::1"] or ["8.8.8.8", "8.8.4.4"]
        if spec.dns:
            servers = list(spec.dns)
        # On user networks the names of the other containers come from aardvark-dns on the gateway
        # (Docker's embedded DNS server); it forwards everything else to the host's resolvers.
        embedded = self.engine.networks.dns_servers(rec)
        if embedded:
            servers = embedded + list(spec.dns)
        if spec.dns_search:
            search = [] if spec.dns_search == ["."] else list(spec.dns_search)
        if spec.dns_options:
            options = list(spec.dns_options)
        out = "".join(f"nameserver {s}\n" for s in servers)
        if search:
            out += "search " + " ".join(search) + "\n"
        if options:
            out += "options " + " ".join(options) + "\n"
        return out

    def rootfs_mounts(self, rec: ContainerRecord) -> list[Mount]:
        """The container's root filesystem mounts; a ``--rm`` container's writes are disposable, so
        its overlay is volatile (see OverlaySnapshotter.mounts)."""
        return self.engine.snapshotter.mounts(rec.id, volatile=rec.spec.auto_remove)

    @contextmanager
    def mounted(self, rec: ContainerRecord) -> Iterator[Path]:
        """The container's rootfs mounted for the block (left mounted if it already was)."""
        target = self.rootfs(rec.id)
        was = is_mounted(target)
        if not was:
            mount_all(self.rootfs_mounts(rec), target)
        try:
            yield target
        finally:
            if not was:
                unmount(target)

    def resolve_user(self, rec: ContainerRecord):
        from dockyard.runtime.spec import resolve_user

        root = self.rootfs(rec.id)

        def read(name: str) -> str | None:
            p = root / "etc" / name
            try:
                if p.is_symlink():
                    return None
                return p.read_text(errors="replace")
            except OSError:
                return None

        return resolve_user(rec.spec.user, read("passwd"), read("group"))

    # -- start ---------------------------------------------------------------------------------
    def start(self, rec: ContainerRecord, on_created=None, client_lock: Path | None = None,
              restart: bool = False) -> ContainerRecord:
        """Start the container; ``on_created(rec)`` runs after the monitor holds the container's stdio
        and before its process runs (attach there to miss nothing).

        ``client_lock``: an attached client that will record the exit itself holds this flock;
        conmon's exit command then does nothing while the client lives (it takes over if the client
        was killed), which saves starting a second dockyard process on every ``run --rm``."""
        from dockyard.runtime.spec import current_hard_limits, make_runtime_spec

        with self.store.locked(rec.id):
            rec = self.store.get(rec.id)
            if restart and rec.stopped_by_user:
                # A stop came while the restart policy waited: the stop wins, and the record says
                # exited (not restarting).  A user's start clears the mark; a policy's never does.
                self.store.update(rec.id, state="exited", where_states=("restarting", "exited"))
                return self.store.get(rec.id)
            if rec.state in ACTIVE and not (restart and rec.state == "restarting"):
                return rec
            target = self.rootfs(rec.id)
            if not is_mounted(target):
                mount_all(self.rootfs_mounts(rec), target)
            try:
                user = self.resolve_user(rec)
                d = self.store.dir(rec.id)
                netns_path = self.engine.networks.setup(rec)
                mounts = self._mount_volumes(rec, target)
                # --network container:X shares X's network identity: its hostname, hosts, resolv.conf.
                mode = rec.spec.network_mode
                etc_dir = self.store.dir(mode.split(":", 1)[1]) if mode.startswith("container:") else d
                config = make_runtime_spec(
                    rec.spec, rootfs=str(target), mounts=mounts,
                    etc_files={"hostname": str(etc_dir / "hostname"), "hosts": str(etc_dir / "hosts"),
                               "resolv.conf": str(etc_dir / "resolv.conf")},
                    cgroups_path=self.cgroups_path(rec.id), user=user, hard_limits=current_hard_limits(),
                    init_path=_init_path() if rec.spec.init else None, netns_path=netns_path,
                )
                (self.bundle(rec.id) / "config.json").write_text(json.dumps(config, separators=(",", ":")))
                for f in self.exit_dir(rec.id).iterdir():
                    f.unlink()
                gen = rec.generation + 1
                exit_command = [sys.executable, "-m", "dockyard", "--root", str(self.engine.root), "system",
                                "container-exited", rec.id, str(gen)]
                flock = shutil.which("flock")
                if client_lock is not None and flock:
                    exit_command = ["/bin/sh", "-c", f'{flock} -n "$0" true || exit 0; exec "$@"',
                                    str(client_lock), *exit_command]
                proc = self.runtime.create(
                    rec.id, self.bundle(rec.id), log_path=self.log_path(rec.id), exit_dir=self.exit_dir(rec.id),
                    persist_dir=self.store.dir(rec.id) / "persist", tty=rec.spec.tty, stdin=rec.spec.open_stdin,
                    stdin_once=rec.spec.stdin_once, exit_command=exit_command,
                )
                health = {"Status": "starting", "FailingStreak": 0, "Log": []} if rec.spec.healthcheck else None
                self.store.update(rec.id, state="running", pid=proc.pid, conmon_pid=proc.conmon_pid,
                                  started_at=time.time(), finished_at=0, exit_code=0, error="", oom_killed=False,
                                  **({} if restart else {"stopped_by_user": False}), generation=gen, health=health)
                if on_created is not None:
                    on_created(self.store.get(rec.id))
                self.runtime.start(rec.id)
                self.engine.events.container("start", rec)
            except BaseException as exc:
                code = runtime_exit_code(str(exc)) if isinstance(exc, DockyardError) else 125
                try:
                    self.runtime.kill(rec.id, signals.SIGKILL, all_processes=True)
                except DockyardError:
                    pass
                self._delete_runtime(rec.id)
                self._unmount_volumes(rec)
                self.engine.networks.teardown(rec)
                if is_mounted(target):
                    unmount(target)
                self.store.update(rec.id, state="created" if rec.state == "created" else "exited",
                                  exit_code=code if code != 125 else 128, error=str(exc), pid=0, conmon_pid=0)
                if isinstance(exc, DockyardError) and code != 125:
                    exc.exit_code = code
                raise
        if rec.spec.healthcheck:
            self._spawn(["system", "healthcheck", rec.id, str(gen)])
        return self.store.get(rec.id)

    # -- volumes -------------------------------------------------------------------------------
    def _mount_volumes(self, rec: ContainerRecord, rootfs: Path):
        """The user's mounts with volumes mounted through their drivers (ref = container id) and
        resolved to host paths; new empty volumes are filled from the image first.  All or none."""
        if not any(m.type in ("volume", "bind") for m in rec.spec.mounts):
            return rec.spec.mounts
        return self.engine.volumes.mount(rec.id, rec.spec.mounts, rootfs)

    def _unmount_volumes(self, rec: ContainerRecord) -> None:
        """Release the volume mounts of the run that ended (best effort: an exit is recorded even
        when a driver cannot be reached; the error lands in the container's Error)."""
        if any(m.type == "volume" for m in rec.spec.mounts):
            self._release(rec, lambda: self.engine.volumes.unmount(rec.id))

    def _teardown_network(self, rec: ContainerRecord) -> None:
        """Release the run's network (best effort, like the volumes: the exit is recorded anyway)."""
        self._release(rec, lambda: self.engine.networks.teardown(rec))

    def _release(self, rec: ContainerRecord, release) -> None:
        """Run ``release`` (returns the errors it met, or raises); errors land in the container's Error."""
        try:
            errors = release()
        except DockyardError as exc:
            errors = [str(exc)]
        if errors:
            try:
                self.store.update(rec.id, error="; ".join(errors))
            except DockyardError:
                pass

    def _spawn(self, args: list[str]) -> None:
        """A detached helper process (own session, no stdio): survives this command."""
        subprocess.Popen([sys.executable, "-m", "dockyard", "--root", str(self.engine.root), *args],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)

    def _delete_runtime(self, cid: str) -> None:
        self._begin_delete_runtime(cid)()

    def _begin_delete_runtime(self, cid: str):
        """``runc delete --force`` started; the returned function waits for it (errors ignored: the
        container may never have reached runc, or be gone already)."""
        try:
            wait = self.runtime.begin_delete(cid, force=True)
        except (DockyardError, OSError):
            return lambda: None

        def finish() -> None:
            try:
                wait()
            except DockyardError:
                pass
        return finish

    # -- stop and exit -------------------------------------------------------------------------
    def kill(self, rec: ContainerRecord, sig: int) -> None:
        from dockyard.engine.containers import _validate_signal

        if sig in (signals.SIGKILL, _validate_signal(rec.spec.stop_signal)):
            self.store.update(rec.id, stopped_by_user=True)
        try:
            self.runtime.kill(rec.id, sig, all_processes=False)
        except NotFound:
            pass
        self.engine.events.container("kill", rec, signal=sig)

    def stop(self, rec: ContainerRecord, timeout: int | None, signal: str | None) -> ContainerRecord:
        from dockyard.engine.containers import _validate_signal

        # Marked first, also when the container is between two runs of its restart policy: a stop
        # then cancels the pending restart (post_exit checks the mark before it restarts).
        self.store.update(rec.id, stopped_by_user=True)
        rec = self.store.get(rec.id)  # the caller's copy may be stale: the container may have exited since
        if rec.state == "restarting":
            # Nothing runs between two runs of the policy: the record says exited.  A restart already
            # under way holds the container's lock; it finishes first, and is stopped below.
            with self.store.locked(rec.id):
                self.store.update(rec.id, state="exited", where_states=("restarting",))
            rec = self.store.get(rec.id)
        if rec.state not in ACTIVE:
            return rec
        if rec.state == "paused":
            try:
                self.runtime.resume(rec.id)
            except DockyardError:
                pass
        t = timeout if timeout is not None else (rec.spec.stop_timeout if rec.spec.stop_timeout is not None else 10)
        sig = _validate_signal(signal or rec.spec.stop_signal)
        # runc answers "not running" (FailedPrecondition) for a process that exited a moment ago and
        # whose exit is not recorded yet: the stop then just records it, as Docker's does.
        if t != 0:
            try:
                self.runtime.kill(rec.id, sig)
            except (NotFound, FailedPrecondition):
                pass
        if t < 0 or not self.wait_exit(rec, timeout=t if t >= 0 else 10**9):
            try:
                self.runtime.kill(rec.id, signals.SIGKILL, all_processes=True)
            except (NotFound, FailedPrecondition):
                pass
            self.wait_exit(rec, timeout=30)
        self.record_exit(rec.id, rec.generation)
        self.engine.events.container("stop", rec)
        return self.store.get(rec.id)

    def wait_exit(self, rec: ContainerRecord, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._stopped(rec.id):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _stopped(self, cid: str) -> bool:
        if (self.exit_dir(cid) / cid).exists():
            return True
        try:
            return self.runtime.state(cid).status == "stopped"
        except NotFound:
            return True

    def record_exit(self, cid: str, generation: int, *, defer: list | None = None) -> bool:
        """Record the exit of run ``generation`` once; tear down its mount and runtime state.

        ``defer``: the caller removes the container right away (an attached ``run --rm``); waiting
        for ``runc delete`` and removing the cgroup are appended to it instead of done here, so
        runc works while the container is removed."""
        with self.store.locked(cid):
            try:
                rec = self.store.get(cid)
            except NotFound:
                return False
            # Once per run: "restarting" means this run's exit is recorded and its restart is pending
            # (a second recorder -- conmon's exit command, a reconciling process -- must not undo it).
            if rec.generation != generation or rec.state not in RUNNING:
                return False
            code = self.runtime.read_exit_code(self.exit_dir(cid), cid)
            if code is None:
                code = 137 if rec.stopped_by_user else UNKNOWN_EXIT
            oom = self._oom(rec)  # before runc delete removes the cgroup
            deleted = self._begin_delete_runtime(cid)  # runc works while this process tears down the rest
            try:
                try:
                    unmount(self.rootfs(cid))
                except DockyardError:
                    pass
                self._unmount_volumes(rec)
                self._teardown_network(rec)
                recorded = self.store.update(cid, where_generation=generation, where_states=RUNNING,
                                             state="exited", exit_code=code, finished_at=time.time(), pid=0,
                                             conmon_pid=0, oom_killed=oom)
                if recorded:
                    self.engine.events.container("die", rec, exitCode=code)
            finally:
                if defer is None:
                    deleted()
            if defer is None:
                self._remove_cgroup(cid)
            else:
                defer.append(lambda: (deleted(), self._remove_cgroup(cid)))
            return recorded

    def _oom(self, rec: ContainerRecord) -> bool:
        try:
            if self.runtime.oom_killed(self.store.dir(rec.id) / "persist", self.bundle(rec.id)):
                return True
        except (AttributeError, DockyardError, OSError):
            pass
        if not rec.spec.resources.memory:
            return False  # as Docker: OOMKilled reports the container's own limit, not the host running out
        try:
            from dockyard.runtime.cgroups import CgroupPaths, oom_kill_count

            return oom_kill_count(CgroupPaths.for_container(self.cgroups_path(rec.id))) > 0
        except Exception:  # noqa: BLE001 - cgroup already gone
            return False

    def _remove_cgroup(self, cid: str) -> None:
        try:
            from dockyard.runtime.cgroups import CgroupPaths, remove

            remove(CgroupPaths.for_container(self.cgroups_path(cid)))
        except Exception:  # noqa: BLE001 - best effort; runc usually removed it
            pass

    def container_exited(self, cid: str, generation: int) -> None:
        """conmon's exit command: record (unless a reconciling process already did), then --rm or the
        restart policy — exactly once per run, since conmon runs this once per generation."""
        self.record_exit(cid, generation)
        try:
            self.post_exit(cid, generation)
        except NotFound:
            pass

    def attached_exit(self, cid: str, generation: int) -> int:
        """The client that ran the container attached saw it exit: record it and apply --rm here
        (without waiting for conmon's exit command), and return the exit code."""
        deadline = time.monotonic() + 5
        exit_file = self.exit_dir(cid) / cid
        while not exit_file.exists() and time.monotonic() < deadline:
            try:
                if self.store.get(cid).generation != generation:
                    break
            except NotFound:
                break
            time.sleep(0.002)
        found = self.store.find(cid)
        pending: list = []
        try:
            self.record_exit(cid, generation, defer=pending if found and found.spec.auto_remove else None)
            try:
                rec = self.store.get(cid)
            except NotFound:
                tomb = self.read_tombstone(cid)
                return tomb if tomb is not None else 0
            if rec.spec.auto_remove:  # restart policies stay with the exit command: no waiting here
                try:
                    self.post_exit(cid, generation)
                except NotFound:
                    pass
                self.read_tombstone(cid)  # this client has the code: the tombstone is not needed
            return rec.exit_code
        finally:
            for finish in pending:
                finish()

    def post_exit(self, cid: str, generation: int) -> None:
        """--rm or the restart policy for run ``generation``; whoever claims it first does it (the
        attached client, conmon's exit command or a reconciling process), exactly once."""
        with self.store.db.write() as conn:
            claimed = conn.execute(
                "UPDATE containers SET exit_handled=? WHERE id=? AND generation=? AND state='exited' "
                "AND exit_handled<?", (generation, cid, generation, generation)).rowcount
        if not claimed:
            return
        rec = self.store.get(cid)
        if rec.spec.auto_remove:
            self.write_tombstone(cid, rec.exit_code)
            self.destroy(rec, remove_volumes=True)
            return
        policy = rec.spec.restart_policy
        restart = (
            policy.name == "always"
            or (policy.name == "unless-stopped" and not rec.stopped_by_user)
            or (policy.name == "on-failure" and rec.exit_code != 0
                and (policy.maximum_retry_count <= 0 or rec.restart_count < policy.maximum_retry_count))
        )
        if rec.stopped_by_user or not restart:
            return
        # Docker's back-off: 100 ms doubling per consecutive restart, reset after 10 s of running.
        ran = rec.finished_at - rec.started_at
        delay = 0.1 if ran > 10 else min(0.1 * (2 ** rec.restart_count), 60)
        if not self.store.update(cid, state="restarting", where_generation=generation, where_states=("exited",),
                                 where_not_stopped=True):
            return
        time.sleep(delay)
        rec = self.store.get(cid)
        if rec.state != "restarting":
            return
        if rec.stopped_by_user:  # a stop came during the back-off: the restart is cancelled
            self.store.update(cid, state="exited", where_states=("restarting",))
            return
        self.store.update(cid, restart_count=rec.restart_count + 1)
        try:
            self.start(self.store.get(cid), restart=True)
        except DockyardError:
            self.store.update(cid, state="exited", where_states=("restarting",))

    def tombstones(self) -> Path:
        return self.store.root / ".exit-codes"

    def write_tombstone(self, cid: str, code: int) -> None:
        """The exit code of a --rm container outlives its record briefly, for the attached client."""
        d = self.tombstones()
        d.mkdir(exist_ok=True)
        cutoff = time.time() - 3600
        for old in d.iterdir():
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
        (d / cid).write_text(str(code))

    def read_tombstone(self, cid: str) -> int | None:
        p = self.tombstones() / cid
        try:
            code = int(p.read_text())
        except (OSError, ValueError):
            return None
        p.unlink(missing_ok=True)
        return code

    def reconcile(self, rec: ContainerRecord) -> ContainerRecord:
        """Bring the record in line with reality when the monitor could not tell us."""
        if rec.state == "restarting":
            if time.time() - rec.finished_at > 120:
                self.store.update(rec.id, state="exited", where_states=("restarting",))
                return self.store.get(rec.id)
            return rec
        if rec.state not in RUNNING:
            return rec
        try:
            st = self.runtime.state(rec.id)
            status = st.status
        except NotFound:
            status = "stopped"
        if status in ("running", "created"):
            if rec.state == "paused":
                self.store.update(rec.id, state="running")
                return self.store.get(rec.id)
            return rec
        if status == "paused":
            if rec.state != "paused":
                self.store.update(rec.id, state="paused")
                return self.store.get(rec.id)
            return rec
        monitor_alive = self._conmon_alive(rec)
        if monitor_alive and not (self.exit_dir(rec.id) / rec.id).exists():
            time.sleep(0.2)  # conmon is still writing the exit file
        self.record_exit(rec.id, rec.generation)
        if not monitor_alive:
            # No exit command will come from a dead monitor: apply --rm / the restart policy here.
            self.post_exit(rec.id, rec.generation)
        try:
            return self.store.get(rec.id)
        except NotFound:
            return rec

    def _conmon_alive(self, rec: ContainerRecord) -> bool:
        if not rec.conmon_pid:
            return False
        try:
            os.kill(rec.conmon_pid, 0)
        except OSError:
            return False
        return True

    def destroy(self, rec: ContainerRecord, *, remove_volumes: bool = False) -> None:
        """Remove everything the container has: runtime state, mount, snapshot, cgroup, files, record,
        its references to volumes and, with ``remove_volumes`` (``rm -v``, ``run --rm``), its
        anonymous volumes.  Named volumes always stay."""
        with self.store.locked(rec.id):
            if rec.state in ACTIVE:  # exited/created ones were deleted from runc when they stopped
                now = self.store.find(rec.id)
                if now is not None and now.state in ACTIVE:  # rm -f: the exit nobody recorded
                    code = self.runtime.read_exit_code(self.exit_dir(rec.id), rec.id)
                    self.engine.events.container("die", rec, exitCode=137 if code is None else code)
                self._delete_runtime(rec.id)
            try:
                unmount(self.rootfs(rec.id))
            except DockyardError:
                pass
            try:
                self.engine.snapshotter.remove(rec.id)
            except NotFound:
                pass
            self._remove_cgroup(rec.id)
            self.engine.networks.detach(rec)
            if any(m.type == "volume" for m in rec.spec.mounts):
                self.engine.volumes.detach(rec.id, rec.spec, remove_anonymous=remove_volumes)
        self.store.delete(rec.id)
        self.engine.events.container("destroy", rec)

    def rw_size(self, rec: ContainerRecord) -> int:
        try:
            return self.engine.snapshotter.usage(rec.id)
        except DockyardError:
            return 0
