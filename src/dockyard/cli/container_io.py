"""Commands that talk to containers: run/start attached, attach, logs, exec, inspect, top, stats, port,
update, commit, export; and the hidden ``system`` entry points conmon and the health monitor use."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import click

from dockyard.cli import flags
from dockyard.cli.containers import container
from dockyard.cli.main import cli
from dockyard.cli.render import for_each, print_inspected, print_table
from dockyard.cli.units import human_size
from dockyard.engine.options import parse_detach_keys
from dockyard.errors import DockyardError, InvalidArgument, NotFound

def _attach_and_start(engine, rec, *, stdin: bool, keys: str, start: bool) -> int:
    """Attach this terminal to the container (starting it once attached), return its exit code."""
    rt = engine.containers.lifecycle.runtime
    tty = rec.spec.tty
    result: dict = {}
    attached = threading.Event()

    def attach_thread(started: threading.Event | None) -> None:
        try:
            result["detached"] = rt.attach(
                rec.id, stdin=sys.stdin.buffer if stdin else None, stdout=sys.stdout.buffer,
                stderr=sys.stderr.buffer, tty=tty, detach_keys=parse_detach_keys(keys),
                on_attached=(lambda: (attached.set(), started.wait(30)) and None) if started else attached.set)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            result["error"] = exc
            attached.set()

    started = threading.Event()
    t = threading.Thread(target=attach_thread, args=(started if start else None,), daemon=True)
    if start:
        def on_created(created_rec) -> None:
            result["generation"] = created_rec.generation
            t.start()
            attached.wait(30)
            if "error" in result:
                raise result["error"]
        lock = None
        if rec.spec.restart_policy.name == "no":
            # This client records the exit and applies --rm itself; conmon's exit command stands by
            # (it acts only if this process dies first).
            lock = engine.containers.store.dir(rec.id) / "client.lock"
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            result["lock_fd"] = fd
        try:
            engine.containers.start(rec.id, on_created=on_created, client_lock=lock)
        finally:
            started.set()
    else:
        t.start()
    if not tty:
        # --sig-proxy: signals to the client go to the container, as docker run does without a tty.
        def forward(signum, _frame):
            try:
                rt.kill(rec.id, signum)
            except DockyardError:
                pass
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(s, forward)
    while t.is_alive():
        t.join(0.2)
    if "error" in result:
        raise result["error"]
    if result.get("detached"):
        return 0
    gen = result.get("generation") or engine.containers.store.get(rec.id).generation
    return _exit_code(engine, rec.id, gen)


def _exit_code(engine, cid: str, generation: int) -> int:
    return engine.containers.lifecycle.attached_exit(cid, generation)


def run_attached(engine, rec, *, detach_keys: str, on_fail) -> int:
    try:
        return _attach_and_start(engine, rec, stdin=rec.spec.open_stdin, keys=detach_keys, start=True)
    except DockyardError as exc:
        on_fail()
        click.echo(f"Error: {exc}", err=True)
        return exc.exit_code if exc.exit_code in (126, 127) else 125


def start_attached(engine, name: str, *, interactive: bool, detach_keys: str) -> int:
    rec = engine.containers.get(name)
    if rec.state == "running":
        return _attach_and_start(engine, rec, stdin=interactive and rec.spec.open_stdin, keys=detach_keys,
                                 start=False)
    return _attach_and_start(engine, rec, stdin=interactive and rec.spec.open_stdin, keys=detach_keys, start=True)


@cli.command("attach")
@click.argument("name")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", help="Override the key sequence for detaching a container")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN")
@click.option("--sig-proxy", type=bool, default=True, help="Proxy all received signals to the process")
@click.pass_obj
def attach_cmd(engine, name, detach_keys, no_stdin, sig_proxy) -> None:
    """Attach local standard input, output, and error streams to a running container"""
    rec = engine.containers.get(name)
    if rec.state != "running":
        raise InvalidArgument("You cannot attach to a stopped container, start it first")
    sys.exit(_attach_and_start(engine, rec, stdin=rec.spec.open_stdin and not no_stdin, keys=detach_keys,
                               start=False))


container.add_command(attach_cmd, "attach")


@cli.command("logs")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("-n", "--tail", default="all", help='Number of lines to show from the end of the logs')
@click.option("--since", default=None, help="Show logs since timestamp or relative (e.g. 42m)")
@click.option("--until", default=None, help="Show logs before a timestamp or relative (e.g. 42m)")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--details", is_flag=True, help="Show extra details provided to logs")
@click.pass_obj
def logs_cmd(engine, name, follow, tail, since, until, timestamps, details) -> None:
    """Fetch the logs of a container"""
    n = None if tail in ("all", "-1") else int(tail)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for frame in engine.containers.io.logs(name, follow=follow, tail=n, since=since, until=until):
        stream = err if frame.stream == "stderr" else out
        if timestamps:
            stream.write(frame.timestamp.encode() + b" ")
        stream.write(frame.data)
        if follow:
            stream.flush()
    out.flush()


container.add_command(logs_cmd, "logs")


@cli.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables")
@click.option("-u", "--user", default=None, help="Username or UID (format: <name|uid>[:<group|gid>])")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command")
@click.option("--detach-keys", default=None, help="Override the key sequence for detaching a container")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_cmd(engine, detach, interactive, tty, env, env_file, user, workdir, privileged, detach_keys, name,
             command) -> None:
    """Execute a command in a running container"""
    try:
        code = engine.containers.io.exec(name, list(command), tty=tty, interactive=interactive, detach=detach,
                                         env=[*flags.env_files(env_file), *env], user=user, workdir=workdir,
                                         privileged=privileged)
    except DockyardError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code if exc.exit_code in (126, 127) else 126 if "exec" in str(exc) else 1)
    sys.exit(code)


container.add_command(exec_cmd, "exec")


@container.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
@click.pass_obj
def container_inspect(engine, names, fmt, size) -> None:
    """Display detailed information on one or more containers"""
    _inspect(engine, names, fmt, kinds=("container",), size=size)


def _inspect(engine, names, fmt, kinds=("container", "image"), size=False) -> None:
    from dockyard.engine.container_view import inspect_container

    found, errors = [], []
    for n in names:
        obj = None
        if "container" in kinds:
            try:
                rec = engine.containers.get(n)
                obj = inspect_container(engine.containers, rec)
                if size:
                    obj["SizeRw"] = engine.containers.lifecycle.rw_size(rec)
            except NotFound:
                obj = None
        if obj is None and "image" in kinds:
            try:
                obj = engine.images.inspect(n)
            except NotFound:
                obj = None
            except DockyardError as exc:
                errors.append(str(exc))
                continue
        if obj is None:
            what = "object" if len(kinds) > 1 else kinds[0]
            errors.append(f"No such {what}: {n}")
        else:
            found.append(obj)
    print_inspected(fmt, found, errors)


# The top-level `inspect` looks at containers first, then images, as docker does.


@cli.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes if the type is container")
@click.option("--type", "type_", default=None, type=click.Choice(["container", "image"]),
              help="Return JSON for specified type")
@click.pass_obj
def inspect_cmd(engine, names, fmt, size, type_) -> None:
    """Return low-level information on dockyard objects"""
    _inspect(engine, names, fmt, kinds=(type_,) if type_ else ("container", "image"), size=size)


@cli.command("top", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def top_cmd(engine, name, ps_args) -> None:
    """Display the running processes of a container"""
    titles, rows = engine.containers.io.top(name, " ".join(ps_args) or None)
    table = "\t".join(titles) + "\n" + "".join("\t".join(r) + "\n" for r in rows)
    from dockyard.cli.format import tabwrite

    click.echo(tabwrite(table, minwidth=0, tabwidth=1, padding=3), nl=False)


container.add_command(top_cmd, "top")


@cli.command("stats")
@click.argument("names", nargs=-1)
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("--no-stream", is_flag=True, help="Disable streaming stats and only pull the first result")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.pass_obj
def stats_cmd(engine, names, all_, no_stream, no_trunc, fmt) -> None:
    """Display a live stream of container(s) resource usage statistics"""
    from dockyard.runtime.cgroup_stats import cpu_percent

    def targets():
        if names:
            return [engine.containers.get(n) for n in names]
        return engine.containers.list(all_=all_)

    prev: dict[str, object] = {}
    headers = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
               "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
               "PIDs": "PIDS"}
    default = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
    first = True
    while True:
        recs = targets()
        samples = {}
        for r in recs:
            if r.state == "running":
                try:
                    samples[r.id] = engine.containers.io.stats(r)
                except (DockyardError, OSError):
                    pass
        if first:
            time.sleep(0.5)  # a second sample for the CPU percentage, as docker stats --no-stream does
            for r in recs:
                if r.id in samples:
                    prev[r.id] = samples[r.id]
                    try:
                        samples[r.id] = engine.containers.io.stats(r)
                    except (DockyardError, OSError):
                        pass
        rows = []
        for r in recs:
            s = samples.get(r.id)
            if s is None:
                rows.append({"ID": r.id if no_trunc else r.id[:12], "Container": r.name, "Name": r.name,
                             "CPUPerc": "0.00%", "MemUsage": "0B / 0B", "MemPerc": "0.00%", "NetIO": "0B / 0B",
                             "BlockIO": "0B / 0B", "PIDs": "0"})
                continue
            p = prev.get(r.id, s)
            mem = max(0, s.memory_usage - s.memory_cache)
            rows.append({
                "ID": r.id if no_trunc else r.id[:12], "Container": r.name, "Name": r.name,
                "CPUPerc": f"{cpu_percent(p, s):.2f}%",
                "MemUsage": f"{_bin(mem)} / {_bin(s.memory_limit)}",
                "MemPerc": f"{(mem / s.memory_limit * 100) if s.memory_limit else 0:.2f}%",
                "NetIO": f"{human_size(s.net_rx)} / {human_size(s.net_tx)}",
                "BlockIO": f"{human_size(s.blkio_read)} / {human_size(s.blkio_write)}",
                "PIDs": str(s.pids_current),
            })
            prev[r.id] = s
        if not no_stream and sys.stdout.isatty():
            click.echo("\x1b[2J\x1b[H", nl=False)
        print_table(fmt, rows, default, headers)
        if no_stream:
            return
        first = False
        time.sleep(1)


def _bin(n: float) -> str:
    """go-units BytesSize: binary units, 4 significant digits (1.5MiB)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


container.add_command(stats_cmd, "stats")


def _split_cp(arg: str) -> tuple[str | None, str]:
    """CONTAINER:PATH or a local path (a leading "/" or "." means local, as in docker cp)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    name, _, path = arg.partition(":")
    return name, path


@cli.command("cp")
@click.argument("src")
@click.argument("dst")
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information)")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output during copy")
@click.pass_obj
def cp_cmd(engine, src, dst, archive, follow_link, quiet) -> None:
    """Copy files/folders between a container and the local filesystem

    Use '-' as the source to read a tar archive from stdin and extract it to a directory destination
    in a container.  Use '-' as the destination to stream a tar archive of a container source to stdout."""
    import tempfile

    from dockyard.containers.archive import local_archive, local_extract

    src_c, src_path = _split_cp(src)
    dst_c, dst_path = _split_cp(dst)
    if src_c and dst_c:
        raise InvalidArgument("copying between containers is not supported")
    if not src_c and not dst_c:
        raise InvalidArgument("must specify at least one container source")
    io = engine.containers.io
    if src_c:
        if dst_path == "-":
            io.copy_from(src_c, src_path, sys.stdout.buffer, follow_link=follow_link)
            return
        with tempfile.TemporaryFile(dir="/var/tmp") as spool:
            io.copy_from(src_c, src_path, spool, follow_link=follow_link)
            spool.seek(0)
            local_extract(Path(dst_path), spool)
        return
    if src_path == "-":
        io.copy_to(dst_c, dst_path, sys.stdin.buffer, copy_uidgid=archive, as_is=True)
        return
    with tempfile.TemporaryFile(dir="/var/tmp") as spool:
        local_archive(Path(src_path), spool, follow_link=follow_link)
        spool.seek(0)
        io.copy_to(dst_c, dst_path, spool, copy_uidgid=archive)


container.add_command(cp_cmd, "cp")


@cli.command("port")
@click.argument("name")
@click.argument("private_port", required=False)
@click.pass_obj
def port_cmd(engine, name, private_port) -> None:
    """List port mappings or a specific mapping for the container"""
    from dockyard.engine.networks import port_lines

    rec = engine.containers.get(name)
    mappings = engine.networks.ports(rec.id) if rec.state in ("running", "paused") else []
    lines = port_lines(mappings, private_port or "")
    if private_port and not lines:
        raise InvalidArgument(f"No public port '{private_port if '/' in private_port else private_port + '/tcp'}' "
                              f"published for {rec.name}")
    for line in lines:
        click.echo(line)


container.add_command(port_cmd, "port")


@cli.command("update")
@click.argument("names", nargs=-1, required=True)
@click.option("-m", "--memory", default=None, help="Memory limit")
@click.option("--memory-swap", default=None, help="Swap limit equal to memory plus swap")
@click.option("--memory-reservation", default=None, help="Memory soft limit")
@click.option("--cpus", default=None, help="Number of CPUs")
@click.option("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight)")
@click.option("--cpu-period", type=int, default=None, help="Limit CPU CFS period")
@click.option("--cpu-quota", type=int, default=None, help="Limit CPU CFS quota")
@click.option("--cpuset-cpus", default=None, help="CPUs in which to allow execution (0-3, 0,1)")
@click.option("--cpuset-mems", default=None, help="MEMs in which to allow execution (0-3, 0,1)")
@click.option("--pids-limit", type=int, default=None, help="Tune container pids limit (set -1 for unlimited)")
@click.option("--restart", default=None, help="Restart policy to apply when a container exits")
@click.pass_obj
def update_cmd(engine, names, memory, memory_swap, memory_reservation, cpus, cpu_shares, cpu_period, cpu_quota,
               cpuset_cpus, cpuset_mems, pids_limit, restart) -> None:
    """Update configuration of one or more containers"""
    res = flags.resources(memory, memory_swap, memory_reservation, cpus, cpu_shares, cpu_period, cpu_quota,
                          cpuset_cpus, cpuset_mems, pids_limit, False)
    policy = flags.restart_policy(restart) if restart is not None else None
    if not for_each(names, lambda n: engine.containers.io.update(n, res, policy)):
        sys.exit(1)


container.add_command(update_cmd, "update")


@cli.command("commit")
@click.argument("name")
@click.argument("reference", required=False)
@click.option("-a", "--author", default="", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
@click.option("-c", "--change", "changes", multiple=True, help="Apply Dockerfile instruction to the created image")
@click.option("-m", "--message", default="", help="Commit message")
@click.option("-p", "--pause", type=bool, default=True, help="Pause container during commit")
@click.pass_obj
def commit_cmd(engine, name, reference, author, changes, message, pause) -> None:
    """Create a new image from a container's changes"""
    click.echo(engine.containers.io.commit(name, reference, message=message, author=author,
                                           changes=list(changes), pause=pause))


container.add_command(commit_cmd, "commit")


@cli.command("export")
@click.argument("name")
@click.option("-o", "--output", default=None, help="Write to a file, instead of STDOUT")
@click.pass_obj
def export_cmd(engine, name, output) -> None:
    """Export a container's filesystem as a tar archive"""
    if output is None:
        if sys.stdout.isatty():
            raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        engine.containers.io.export(name, sys.stdout.buffer)
        return
    tmp = output + ".tmp"
    try:
        with open(tmp, "wb") as f:
            engine.containers.io.export(name, f)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


container.add_command(export_cmd, "export")


# -- system entry points -----------------------------------------------------------------------
@cli.group("system")
def system_group() -> None:
    """Manage dockyard"""


@system_group.command("boot")
@click.pass_obj
def system_boot(engine) -> None:
    """Start the containers whose restart policy asks for it (run once at host boot, e.g. from a unit)."""
    for name in engine.containers.boot():
        click.echo(name)


@system_group.command("container-exited", hidden=True)
@click.argument("cid")
@click.argument("generation", type=int)
@click.pass_obj
def system_container_exited(engine, cid, generation) -> None:
    """Called by conmon when a container exits: record it, then --rm or restart policy."""
    try:
        engine.containers.lifecycle.container_exited(cid, generation)
    except NotFound:
        pass


@system_group.command("healthcheck", hidden=True)
@click.argument("cid")
@click.argument("generation", type=int)
@click.pass_obj
def system_healthcheck(engine, cid, generation) -> None:
    """The health-check monitor of one container run (started detached by `start`)."""
    engine.containers.io.health_loop(cid, generation)
