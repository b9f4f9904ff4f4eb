"""Container lifecycle with Docker's semantics: create, start, stop, kill, restart, rm, wait, rename,
pause, update, prune, and the truth about state for ps/inspect.

Daemonless: a started container belongs to its conmon monitor.  conmon runs
``dockyard system container-exited ID GENERATION`` when the container exits; that records the exit,
tears down the rootfs mount and applies the restart policy (:mod:`dockyard.engine.lifecycle`).  Any
dockyard process may also find a container whose monitor died: :meth:`ContainerEngine.reconcile`
asks runc and the exit files and records what really happened.
"""

from __future__ import annotations

import os
import random
import re
import signal as signals
import time
from functools import cached_property
from typing import TYPE_CHECKING

from dockyard.containers.model import ContainerSpec, HealthSpec
from dockyard.containers.store import ACTIVE, ContainerRecord, ContainerStore
from dockyard.engine.options import ContainerCreateOptions, Filters
from dockyard.oci.reference import display_name
from dockyard.errors import (
    Conflict,
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

if TYPE_CHECKING:
    from dockyard.engine import Engine

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_ADJ = ["admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome", "blissful", "bold",
        "boring", "brave", "busy", "charming", "clever", "cool", "compassionate", "competent", "confident",
        "crazy", "dazzling", "determined", "distracted", "dreamy", "eager", "ecstatic", "elastic", "elated",
        "elegant", "eloquent", "epic", "exciting", "fervent", "festive", "flamboyant", "focused", "friendly",
        "frosty", "funny", "gallant", "gifted", "goofy", "gracious", "great", "happy", "hardcore", "heuristic",
        "hopeful", "hungry", "infallible", "inspiring", "intelligent", "interesting", "jolly", "jovial", "keen",
        "kind", "laughing", "loving", "lucid", "magical", "modest", "musing", "mystifying", "naughty", "nervous",
        "nice", "nifty", "nostalgic", "objective", "optimistic", "peaceful", "pedantic", "pensive", "practical",
        "priceless", "quirky", "quizzical", "recursing", "relaxed", "reverent", "romantic", "sad", "serene",
        "sharp", "silly", "sleepy", "stoic", "strange", "stupefied", "suspicious", "sweet", "tender",
        "thirsty", "trusting", "unruffled", "upbeat", "vibrant", "vigilant", "vigorous", "wizardly",
        "wonderful", "xenodochial", "youthful", "zealous", "zen"]
_NAMES = ["albattani", "allen", "almeida", "archimedes", "ardinghelli", "babbage", "banach", "bardeen",
          "bartik", "bassi", "bell", "benz", "bhabha", "bohr", "booth", "borg", "bose", "boyd", "brahmagupta",
          "brattain", "brown", "carson", "cerf", "chandrasekhar", "chaplygin", "clarke", "colden", "cori",
          "cray", "curie", "darwin", "davinci", "diffie", "dijkstra", "dirac", "driscoll", "dubinsky",
          "easley", "edison", "einstein", "elion", "engelbart", "euclid", "euler", "fermat", "fermi",
          "feynman", "franklin", "galileo", "gates", "goldberg", "goldstine", "goodall", "hamilton", "hawking",
          "heisenberg", "hermann", "hodgkin", "hoover", "hopper", "hugle", "hypatia", "jackson", "jang",
          "jennings", "jepsen", "johnson", "joliot", "jones", "kalam", "kapitsa", "keldysh", "keller",
          "kepler", "khorana", "kilby", "kirch", "knuth", "kowalevski", "lalande", "lamarr", "lamport",
          "leakey", "leavitt", "lewin", "lichterman", "liskov", "lovelace", "lumiere", "mahavira", "margulis",
          "matsumoto", "mayer", "mccarthy", "mcclintock", "mclean", "meitner", "mendel", "mestorf", "minsky",
          "mirzakhani", "morse", "murdock", "napier", "nash", "neumann", "newton", "nobel", "noether",
          "northcutt", "noyce", "panini", "pare", "pasteur", "payne", "perlman", "pike", "poincare", "poitras",
          "ptolemy", "raman", "ramanujan", "ride", "ritchie", "roentgen", "rosalind", "saha", "sammet",
          "shamir", "shannon", "shaw", "shirley", "shockley", "sinoussi", "snyder", "spence", "stonebraker",
          "sutherland", "swanson", "swartz", "swirles", "tesla", "thompson", "torvalds", "turing", "varahamihira",
          "visvesvaraya", "volhard", "wescoff", "wiles", "williams", "wilson", "wing", "wozniak", "wright",
          "yalow", "yonath"]


def _bindings(publish: list[str]) -> dict:
    if not publish:
        return {}
    from dockyard.networks.model import merge_bindings

    return merge_bindings(publish)


def random_name() -> str:
    return f"{random.choice(_ADJ)}_{random.choice(_NAMES)}"


class ContainerEngine:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = ContainerStore(engine.db, engine.root / "containers")

    @cached_property
    def io(self):
        from dockyard.engine.container_io import ContainerIO

        return ContainerIO(self)

    @cached_property
    def lifecycle(self):
        from dockyard.engine.lifecycle import Lifecycle

        return Lifecycle(self.engine, self.store)

    # -- lookup --------------------------------------------------------------------------------
    def get(self, name_or_id: str, *, reconcile: bool = True) -> ContainerRecord:
        rec = self.store.get(name_or_id)
        if reconcile and rec.state in ACTIVE:
            rec = self.lifecycle.reconcile(rec)
        return rec

    def list(self, *, all_: bool = False, filters: Filters | None = None, last: int = -1) -> list[ContainerRecord]:
        f = filters or Filters()
        f.check({"status", "name", "id", "label", "ancestor", "exited", "health", "before", "since",
                 "volume", "network", "publish", "expose", "is-task"})
        recs = [self.lifecycle.reconcile(r) if r.state in ACTIVE else r for r in self.store.list()]
        if last > 0:
            recs = recs[:last]
        out = []
        for r in recs:
            if not (all_ or last > 0 or f.get("status") or f.get("exited")) and r.state not in ACTIVE:
                continue
            if not self._matches(r, f):
                continue
            out.append(r)
        return out

    def _matches(self, r: ContainerRecord, f: Filters) -> bool:
        if f.get("status"):
            for s in f.get("status"):
                if s not in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
                    raise InvalidArgument(f"Invalid filter 'status={s}'")
            if r.state not in f.get("status"):
                return False
        if f.get("name") and not any(re.search(n.lstrip("/"), r.name) for n in f.get("name")):
            return False
        if f.get("id") and not any(r.id.startswith(i) for i in f.get("id")):
            return False
        for want in f.get("label"):
            k, eq, v = want.partition("=")
            if k not in r.spec.labels or (eq and r.spec.labels[k] != v):
                return False
        if f.get("volume") and not any(m.name in f.get("volume") or m.target in f.get("volume")
                                       or (m.type == "bind" and m.source in f.get("volume"))
                                       for m in r.spec.mounts):
            return False
        if f.get("network"):
            nets = set(self.engine.networks.network_names(r))
            ids = {self.engine.networks.get(n).id for n in nets if n and not n.startswith("container")}
            if not any(v in nets or any(i.startswith(v) for i in ids) for v in f.get("network")):
                return False
        for key, ports in (("publish", lambda: r.spec.port_bindings.keys() | (r.spec.exposed_ports.keys()
                                                                               if r.spec.publish_all else set())),
                           ("expose", lambda: r.spec.exposed_ports.keys())):
            if f.get(key) and not any(_port_filter(v, ports()) for v in f.get(key)):
                return False
        if f.get("exited"):
            if r.state != "exited" or str(r.exit_code) not in f.get("exited"):
                return False
        if f.get("health"):
            status = (r.health or {}).get("Status", "none") if r.spec.healthcheck else "none"
            if status not in f.get("health"):
                return False
        if f.get("ancestor"):
            ok = False
            for a in f.get("ancestor"):
                img = self.engine.image_store.lookup(a)
                if (img and img.id == r.image_id) or a == r.spec.image_name:
                    ok = True
            if not ok:
                return False
        for key, cmp in (("before", lambda a, b: a < b), ("since", lambda a, b: a > b)):
            for other in f.get(key):
                o = self.store.get(other)
                if not cmp(r.created, o.created):
                    return False
        return True

    # -- create --------------------------------------------------------------------------------
    def create(self, opts: ContainerCreateOptions) -> ContainerRecord:
        image = self.engine.image_store.lookup(opts.image)
        if image is None:
            raise NotFound(f"Unable to find image '{display_name(opts.image)}' locally\n"
                           f"Error: No such image: {display_name(opts.image)}")
        cfg = self.engine.image_store.config(image.id).to_dict().get("config") or {}
        name = opts.name.lstrip("/") if opts.name else ""
        if name and not NAME_RE.match(name):
            raise InvalidArgument(f"Invalid container name ({opts.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if not name:
            for _ in range(20):
                name = random_name()
                if self.store.find(name) is None:
                    break
        entrypoint = cfg.get("Entrypoint")
        cmd = cfg.get("Cmd")
        if opts.entrypoint is not None:
            entrypoint = (list(opts.entrypoint) if isinstance(opts.entrypoint, list) else [opts.entrypoint]
                          ) if opts.entrypoint else None
            cmd = None  # a new entrypoint resets the image's CMD, as in Docker
        if opts.command:
            cmd = list(opts.command)
        args = [*(entrypoint or []), *(cmd or [])]
        if not args:
            raise InvalidArgument("no command specified")
        env = list(cfg.get("Env") or [])
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_PATH)
        for e in opts.env:
            key = e.split("=", 1)[0]
            if "=" not in e:
                value = os.environ.get(e)
                if value is None:
                    continue
                e = f"{e}={value}"
            env = [x for x in env if x.split("=", 1)[0] != key] + [e]
        health = _health(cfg.get("Healthcheck"), opts)
        cid = os.urandom(32).hex()  # secrets.token_hex, without importing secrets (hmac, OpenSSL)
        bindings = _bindings(opts.publish)
        spec = ContainerSpec(
            id=cid, name=name, image_id=image.id, image_name=opts.image, args=args,
            entrypoint=entrypoint, cmd=cmd, env=env,
            working_dir=opts.workdir or cfg.get("WorkingDir") or "",
            user=opts.user if opts.user is not None else (cfg.get("User") or ""),
            hostname=opts.hostname or (os.uname().nodename if opts.network == "host" else cid[:12]),
            domainname=opts.domainname,
            labels={**(cfg.get("Labels") or {}), **opts.labels},
            tty=opts.tty, open_stdin=opts.interactive, stdin_once=opts.interactive and opts.attach,
            attach_stdin=opts.interactive and opts.attach, attach_stdout=opts.attach, attach_stderr=opts.attach,
            stop_signal=opts.stop_signal or cfg.get("StopSignal") or "SIGTERM",
            stop_timeout=opts.stop_timeout, init=opts.init, read_only=opts.read_only,
            privileged=opts.privileged, cap_add=list(opts.cap_add), cap_drop=list(opts.cap_drop),
            security_opt=list(opts.security_opt),
            no_new_privileges=any(o in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")
                                  for o in opts.security_opt),
            tmpfs=dict(opts.tmpfs), shm_size=opts.shm_size or 64 * 1024 * 1024, ulimits=list(opts.ulimits),
            resources=opts.resources, restart_policy=opts.restart_policy, healthcheck=health,
            extra_hosts=list(opts.add_hosts), dns=list(opts.dns), dns_search=list(opts.dns_search),
            dns_options=list(opts.dns_options), network_mode=opts.network or "bridge",
            network_aliases=list(opts.network_aliases), ipv4_address=opts.ip, mac_address=opts.mac_address,
            port_bindings=bindings, publish_all=opts.publish_all,
            exposed_ports=_exposed(cfg.get("ExposedPorts"), opts.expose, bindings),
            volumes=dict(cfg.get("Volumes") or {}),
            auto_remove=opts.auto_remove, cidfile=opts.cidfile, created=time.time(),
        )
        if spec.auto_remove and spec.restart_policy.name != "no":
            raise InvalidArgument("Conflicting options: --restart and --rm")
        _validate_signal(spec.stop_signal)
        if opts.cidfile and os.path.exists(opts.cidfile):
            raise InvalidArgument(f"container ID file found, make sure the other container isn't running or "
                                  f"delete {opts.cidfile}")
        if spec.network_mode in ("host", "none") or spec.network_mode.startswith("container:"):
            if spec.port_bindings or spec.publish_all:
                spec.port_bindings, spec.publish_all = {}, False  # Docker discards them (with a warning)
        spec.network_mode = self.engine.networks.attach_new(
            cid, name, spec.network_mode, aliases=spec.network_aliases, ip=spec.ipv4_address, mac=spec.mac_address)
        try:
            spec.mounts = self._volumes(cid, spec, opts)
            rec = self.store.add(spec)
        except BaseException:
            if any(m.type == "volume" for m in spec.mounts):
                self.engine.volumes.detach(cid, spec, remove_anonymous=True)
            self.engine.networks.service.store.remove_endpoint(cid)
            raise
        try:
            self.lifecycle.prepare(rec)
            if opts.cidfile:
                with open(opts.cidfile, "x") as f:
                    f.write(cid)
        except BaseException:
            self.lifecycle.destroy(rec, remove_volumes=True)
            raise
        self.engine.events.container("create", rec)
        return self.store.get(cid)

    def _volumes(self, cid: str, spec: ContainerSpec, opts: ContainerCreateOptions) -> list:
        """-v/--mount and the image's VOLUMEs: validated, volumes created and referenced by ``cid``."""
        if not opts.mounts and not spec.volumes:
            return []
        planned = self.engine.volumes.plan(opts.mounts, spec.volumes, list(spec.tmpfs))
        if not any(m.type == "volume" for m in planned):
            return planned
        return self.engine.volumes.attach(cid, planned, opts.volume_driver)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, name_or_id: str, on_created=None, client_lock=None) -> ContainerRecord:
        rec = self.get(name_or_id)
        if rec.state == "running":
            return rec
        if rec.state == "paused":
            raise Conflict("cannot start a paused container, try unpause instead")
        return self.lifecycle.start(rec, on_created, client_lock)

    def stop(self, name_or_id: str, timeout: int | None = None, signal: str | None = None) -> ContainerRecord:
        rec = self.get(name_or_id)
        return self.lifecycle.stop(rec, timeout, signal)

    def kill(self, name_or_id: str, signal: str = "SIGKILL") -> None:
        rec = self.get(name_or_id)
        if rec.state not in ("running", "paused"):
            raise Conflict(f"Cannot kill container: {name_or_id}: container {rec.id} is not running")
        sig = _validate_signal(signal)
        self.lifecycle.kill(rec, sig)

    def restart(self, name_or_id: str, timeout: int | None = None) -> ContainerRecord:
        rec = self.get(name_or_id)
        if rec.state in ACTIVE:
            rec = self.lifecycle.stop(rec, timeout, None)
        return self.lifecycle.start(self.store.get(rec.id))

    def remove(self, name_or_id: str, *, force: bool = False, volumes: bool = False) -> None:
        rec = self.get(name_or_id)
        if rec.state in ACTIVE:
            if not force:
                raise Conflict(
                    f"You cannot remove a {rec.state} container {rec.id}. Stop the container before "
                    "attempting removal or force remove"
                )
            try:
                self.lifecycle.kill(rec, signals.SIGKILL)
            except FailedPrecondition:
                pass  # its process exited a moment ago ("not running"): removing it is all that is left
            self.lifecycle.wait_exit(self.store.get(rec.id), timeout=15)
        self.lifecycle.destroy(self.store.get(rec.id), remove_volumes=volumes)

    def wait(self, name_or_id: str, condition: str = "not-running") -> int:
        rec = self.get(name_or_id)
        while True:
            rec = self.get(rec.id)
            if rec.state not in ACTIVE and (condition != "next-exit" or rec.finished_at):
                if rec.state == "created" and condition == "not-running":
                    return rec.exit_code
                if rec.state in ("exited", "dead", "created"):
                    return rec.exit_code
            time.sleep(0.1)
            try:
                self.store.get(rec.id)
            except NotFound:
                return rec.exit_code

    def rename(self, name_or_id: str, new_name: str) -> None:
        rec = self.get(name_or_id, reconcile=False)
        new = new_name.lstrip("/")
        if not NAME_RE.match(new):
            raise InvalidArgument(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if new == rec.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        self.store.rename(rec.id, new)
        self.engine.events.container("rename", rec, name=new, oldName=rec.name)

    def pause(self, name_or_id: str) -> None:
        rec = self.get(name_or_id)
        if rec.state != "running":
            raise Conflict(f"Container {rec.id} is not running")
        self.lifecycle.runtime.pause(rec.id)
        self.store.update(rec.id, state="paused")
        self.engine.events.container("pause", rec)

    def unpause(self, name_or_id: str) -> None:
        rec = self.get(name_or_id)
        if rec.state != "paused":
            raise Conflict(f"Container {rec.id} is not paused")
        self.lifecycle.runtime.resume(rec.id)
        self.store.update(rec.id, state="running")
        self.engine.events.container("unpause", rec)

    def boot(self) -> list[str]:
        """After a host reboot: start what the restart policies ask for, as dockerd does at start."""
        self.engine.networks.cleanup()  # namespaces and ports of runs the reboot ended
        started = []
        for r in self.list(all_=True):
            if r.state in ACTIVE:
                continue
            p = r.spec.restart_policy.name
            if (p == "always" or (p == "unless-stopped" and not r.stopped_by_user)
                    or (p == "on-failure" and r.exit_code != 0 and not r.stopped_by_user)):
                try:
                    self.lifecycle.start(r)
                    started.append(r.name)
                except DockyardError:
                    continue
        return started

    def prune(self, filters: Filters | None = None) -> tuple[list[str], int]:
        f = filters or Filters()
        f.check({"until", "label"})
        removed: list[str] = []
        space = 0
        for r in self.list(all_=True):
            if r.state in ACTIVE or r.state == "removing":
                continue
            if not self._matches(r, Filters({"label": f.get("label")})):
                continue
            if f.get("until"):
                from dockyard.engine.images import _until

                if not all(r.created < _until(u) for u in f.get("until")):
                    continue
            space += self.lifecycle.rw_size(r)
            self.lifecycle.destroy(r)
            removed.append(r.id)
        return removed, space


def _port_filter(value: str, keys) -> bool:
    """ps --filter publish=/expose=: ``80``, ``80/udp`` or a range ``8000-8080/tcp`` of container ports."""
    port, _, proto = value.partition("/")
    lo, _, hi = port.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise InvalidArgument(f"invalid port filter {value!r}") from None
    for k in keys:
        p, _, pr = k.partition("/")
        if a <= int(p) <= b and (pr or "tcp") == (proto or "tcp"):
            return True
    return False


def _exposed(image: dict | None, expose: list[str], bindings: dict) -> dict[str, dict]:
    """ExposedPorts: the image's, --expose's, and every port -p publishes (Docker exposes those too)."""
    out = dict(image or {})
    if expose:
        from dockyard.networks.model import parse_expose

        for e in expose:
            for key in parse_expose(e):
                out[key] = {}
    for key in bindings:
        out[key] = {}
    return out


def _health(image_hc: dict | None, opts: ContainerCreateOptions) -> HealthSpec | None:
    if opts.no_healthcheck:
        if opts.health_cmd:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return None
    test: list[str] | None = None
    base = image_hc or {}
    if base.get("Test"):
        test = list(base["Test"])
    if opts.health_cmd:
        test = ["CMD-SHELL", opts.health_cmd]
    if not test or test == ["NONE"]:
        return None
    ns = 1e9

    def pick(opt: float | None, key: str, default: float) -> float:
        if opt is not None:
            return opt
        return base[key] / ns if base.get(key) else default

    return HealthSpec(
        test=test,
        interval=pick(opts.health_interval, "Interval", 30.0),
        timeout=pick(opts.health_timeout, "Timeout", 30.0),
        start_period=pick(opts.health_start_period, "StartPeriod", 0.0),
        start_interval=pick(opts.health_start_interval, "StartInterval", 5.0),
        retries=opts.health_retries if opts.health_retries is not None else int(base.get("Retries") or 3),
    )


def _validate_signal(sig: str | int) -> int:
    if isinstance(sig, int) or str(sig).isdigit():
        n = int(sig)
        if n < 1 or n > 64:
            raise InvalidArgument(f"Invalid signal: {sig}")
        return n
    s = str(sig).upper()
    if not s.startswith("SIG"):
        s = "SIG" + s
    try:
        return int(getattr(signals, s))
    except AttributeError:
        raise InvalidArgument(f"Invalid signal: {sig}") from None
