"""Container lifecycle commands: create, run, start, stop, kill, restart, rm, ps, wait, rename, pause,
unpause, container prune.  I/O commands (logs, exec, attach, cp, top, stats, ...) are in cli/container_io.py."""

from __future__ import annotations

import sys
import time

import click

from dockyard.cli import flags
from dockyard.cli.main import CONTEXT_SETTINGS, DockyardGroup, cli
from dockyard.cli.render import confirm, for_each, print_table
from dockyard.cli.units import human_duration, human_size
from dockyard.engine.options import ContainerCreateOptions, Filters
from dockyard.errors import DockyardError


@cli.group("container", cls=DockyardGroup, context_settings=CONTEXT_SETTINGS)
def container() -> None:
    """Manage containers"""


def _with(options):
    def deco(f):
        for o in reversed(options):
            f = o(f)
        return f
    return deco


CREATE_OPTIONS = [
    click.option("--name", default="", help="Assign a name to the container"),
    click.option("-e", "--env", multiple=True, help="Set environment variables"),
    click.option("--env-file", multiple=True, help="Read in a file of environment variables"),
    click.option("-w", "--workdir", default="", help="Working directory inside the container"),
    click.option("-u", "--user", default=None, help="Username or UID (format: <name|uid>[:<group|gid>])"),
    click.option("--entrypoint", default=None, help="Overwrite the default ENTRYPOINT of the image"),
    click.option("-h", "--hostname", default="", help="Container host name"),
    click.option("--domainname", default="", help="Container NIS domain name"),
    click.option("-l", "--label", "labels", multiple=True, help="Set meta data on a container"),
    click.option("--label-file", multiple=True, help="Read in a line delimited file of labels"),
    click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached"),
    click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY"),
    click.option("--init", is_flag=True, help="Run an init inside the container that forwards signals and reaps processes"),
    click.option("--restart", default="no", help="Restart policy to apply when a container exits"),
    click.option("--rm", "auto_remove", is_flag=True, help="Automatically remove the container when it exits"),
    click.option("-m", "--memory", default=None, help="Memory limit"),
    click.option("--memory-swap", default=None, help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
    click.option("--memory-reservation", default=None, help="Memory soft limit"),
    click.option("--cpus", default=None, help="Number of CPUs"),
    click.option("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight)"),
    click.option("--cpu-period", type=int, default=None, help="Limit CPU CFS (Completely Fair Scheduler) period"),
    click.option("--cpu-quota", type=int, default=None, help="Limit CPU CFS (Completely Fair Scheduler) quota"),
    click.option("--cpuset-cpus", default=None, help="CPUs in which to allow execution (0-3, 0,1)"),
    click.option("--cpuset-mems", default=None, help="MEMs in which to allow execution (0-3, 0,1)"),
    click.option("--pids-limit", type=int, default=None, help="Tune container pids limit (set -1 for unlimited)"),
    click.option("--oom-kill-disable", is_flag=True, help="Disable OOM Killer"),
    click.option("--read-only", is_flag=True, help="Mount the container's root filesystem as read only"),
    click.option("--tmpfs", multiple=True, help="Mount a tmpfs directory"),
    click.option("-v", "--volume", "volumes", multiple=True, help="Bind mount a volume"),
    click.option("--mount", "mounts", multiple=True, help="Attach a filesystem mount to the container"),
    click.option("--volume-driver", default="", help="Optional volume driver for the container"),
    click.option("--shm-size", default=None, help="Size of /dev/shm"),
    click.option("--ulimit", "ulimits", multiple=True, help="Ulimit options"),
    click.option("--cap-add", multiple=True, help="Add Linux capabilities"),
    click.option("--cap-drop", multiple=True, help="Drop Linux capabilities"),
    click.option("--privileged", is_flag=True, help="Give extended privileges to this container"),
    click.option("--security-opt", multiple=True, help="Security Options"),
    click.option("--stop-signal", default="", help="Signal to stop the container"),
    click.option("--stop-timeout", type=int, default=None, help="Timeout (in seconds) to stop a container"),
    click.option("--health-cmd", default="", help="Command to run to check health"),
    click.option("--health-interval", default=None, help="Time between running the check (ms|s|m|h)"),
    click.option("--health-retries", type=int, default=None, help="Consecutive failures needed to report unhealthy"),
    click.option("--health-start-period", default=None, help="Start period for the container to initialize"),
    click.option("--health-start-interval", default=None, help="Time between running the check during the start period"),
    click.option("--health-timeout", default=None, help="Maximum time to allow one check to run (ms|s|m|h)"),
    click.option("--no-healthcheck", is_flag=True, help="Disable any container-specified HEALTHCHECK"),
    click.option("--cidfile", default="", help="Write the container ID to the file"),
    click.option("--add-host", multiple=True, help="Add a custom host-to-IP mapping (host:ip)"),
    click.option("--dns", multiple=True, help="Set custom DNS servers"),
    click.option("--dns-search", multiple=True, help="Set custom DNS search domains"),
    click.option("--dns-option", multiple=True, help="Set DNS options"),
    click.option("--network", "--net", "network", default="", help="Connect a container to a network"),
    click.option("--network-alias", "--net-alias", "network_alias", multiple=True,
                 help="Add network-scoped alias for the container"),
    click.option("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)"),
    click.option("--mac-address", default="", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    click.option("-p", "--publish", multiple=True, help="Publish a container's port(s) to the host"),
    click.option("-P", "--publish-all", is_flag=True, help="Publish all exposed ports to random ports"),
    click.option("--expose", multiple=True, help="Expose a port or a range of ports"),
    click.argument("image"),
    click.argument("command", nargs=-1, type=click.UNPROCESSED),
]


def build_options(kw: dict, attach: bool) -> ContainerCreateOptions:
    return ContainerCreateOptions(
        image=kw["image"], command=list(kw["command"]), entrypoint=kw["entrypoint"], name=kw["name"],
        env=[*flags.env_files(kw["env_file"]), *kw["env"]], workdir=kw["workdir"], user=kw["user"],
        hostname=kw["hostname"], domainname=kw["domainname"], labels=flags.labels(kw["labels"], kw["label_file"]),
        tty=kw["tty"], interactive=kw["interactive"], attach=attach, init=kw["init"], read_only=kw["read_only"],
        privileged=kw["privileged"], cap_add=list(kw["cap_add"]), cap_drop=list(kw["cap_drop"]),
        security_opt=list(kw["security_opt"]), tmpfs=flags.tmpfs(kw["tmpfs"]),
        shm_size=flags.size(kw["shm_size"], "--shm-size"), ulimits=[flags.ulimit(u) for u in kw["ulimits"]],
        resources=flags.resources(kw["memory"], kw["memory_swap"], kw["memory_reservation"], kw["cpus"],
                                  kw["cpu_shares"], kw["cpu_period"], kw["cpu_quota"], kw["cpuset_cpus"],
                                  kw["cpuset_mems"], kw["pids_limit"], kw["oom_kill_disable"]),
        restart_policy=flags.restart_policy(kw["restart"]), stop_signal=kw["stop_signal"],
        stop_timeout=kw["stop_timeout"], health_cmd=kw["health_cmd"],
        health_interval=flags.duration(kw["health_interval"], "--health-interval"),
        health_timeout=flags.duration(kw["health_timeout"], "--health-timeout"),
        health_start_period=flags.duration(kw["health_start_period"], "--health-start-period"),
        health_start_interval=flags.duration(kw["health_start_interval"], "--health-start-interval"),
        health_retries=kw["health_retries"], no_healthcheck=kw["no_healthcheck"], auto_remove=kw["auto_remove"],
        cidfile=kw["cidfile"], add_hosts=list(kw["add_host"]), dns=list(kw["dns"]),
        dns_search=list(kw["dns_search"]), dns_options=list(kw["dns_option"]), network=kw["network"],
        network_aliases=list(kw["network_alias"]), ip=kw["ip"], mac_address=kw["mac_address"],
        publish=list(kw["publish"]), publish_all=kw["publish_all"], expose=list(kw["expose"]),
        mounts=_mounts(kw["volumes"], kw["mounts"], kw["volume_driver"]), volume_driver=kw["volume_driver"],
    )


def _mounts(volumes: tuple[str, ...], mounts: tuple[str, ...], volume_driver: str) -> list:
    if not volumes and not mounts:
        return []
    from dockyard.volumes.mountspec import parse_mount, parse_volume

    return [*(parse_volume(v, volume_driver) for v in volumes), *(parse_mount(m) for m in mounts)]


_PASS_THROUGH = {"ignore_unknown_options": False, "allow_interspersed_args": False, **CONTEXT_SETTINGS}
_PASS_THROUGH["help_option_names"] = ["--help"]  # -h is --hostname, as in docker


@cli.command("create", context_settings=_PASS_THROUGH)
@_with(CREATE_OPTIONS)
@click.pass_obj
def create_cmd(engine, **kw) -> None:
    """Create a new container"""
    rec = engine.containers.create(build_options(kw, attach=False))
    click.echo(rec.id)


container.add_command(create_cmd, "create")


@cli.command("run", context_settings=_PASS_THROUGH)
@click.option("-d", "--detach", is_flag=True, help="Run container in background and print container ID")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", help="Override the key sequence for detaching a container")
@click.option("-a", "--attach", "attach_streams", multiple=True, help="Attach to STDIN, STDOUT or STDERR")
@_with(CREATE_OPTIONS)
@click.pass_obj
def run_cmd(engine, detach, detach_keys, attach_streams, **kw) -> None:
    """Create and run a new container from an image"""
    from dockyard.cli.container_io import run_attached

    opts = build_options(kw, attach=not detach)
    if detach and opts.auto_remove and False:
        pass
    try:
        rec = engine.containers.create(opts)
    except DockyardError as exc:
        exc.exit_code = 125 if exc.exit_code in (1, 125) else exc.exit_code
        raise
    if detach:
        try:
            engine.containers.start(rec.id)
        except DockyardError:
            _discard(engine, rec.id)
            raise
        click.echo(rec.id)
        return
    sys.exit(run_attached(engine, rec, detach_keys=detach_keys, on_fail=lambda: _discard(engine, rec.id)))


def _discard(engine, cid: str) -> None:
    """A run whose start failed leaves no container behind."""
    try:
        engine.containers.remove(cid, force=True)
    except DockyardError:
        pass


container.add_command(run_cmd, "run")


@cli.command("start")
@click.argument("containers", nargs=-1, required=True)
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", help="Override the key sequence for detaching a container")
@click.pass_obj
def start_cmd(engine, containers, attach, interactive, detach_keys) -> None:
    """Start one or more stopped containers"""
    if attach or interactive:
        from dockyard.cli.container_io import start_attached

        if len(containers) > 1:
            raise click.UsageError("you cannot start and attach multiple containers at once")
        sys.exit(start_attached(engine, containers[0], interactive=interactive, detach_keys=detach_keys))
    if not for_each(containers, engine.containers.start):
        click.echo("Error: failed to start containers: " + ", ".join(containers), err=True)
        sys.exit(1)


container.add_command(start_cmd, "start")


def _each(names, action, show=lambda name, result: name) -> None:
    if not for_each(names, action, show):
        sys.exit(1)


@cli.command("stop")
@click.argument("containers", nargs=-1, required=True)
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing the container")
@click.option("-s", "--signal", default=None, help="Signal to send to the container")
@click.pass_obj
def stop_cmd(engine, containers, timeout, signal) -> None:
    """Stop one or more running containers"""
    _each(containers, lambda c: engine.containers.stop(c, timeout, signal))


container.add_command(stop_cmd, "stop")


@cli.command("kill")
@click.argument("containers", nargs=-1, required=True)
@click.option("-s", "--signal", default="KILL", help="Signal to send to the container")
@click.pass_obj
def kill_cmd(engine, containers, signal) -> None:
    """Kill one or more running containers"""
    _each(containers, lambda c: engine.containers.kill(c, signal))


container.add_command(kill_cmd, "kill")


@cli.command("restart")
@click.argument("containers", nargs=-1, required=True)
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing the container")
@click.pass_obj
def restart_cmd(engine, containers, timeout) -> None:
    """Restart one or more containers"""
    _each(containers, lambda c: engine.containers.restart(c, timeout))


container.add_command(restart_cmd, "restart")


@cli.command("rm")
@click.argument("containers", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL)")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes associated with the container")
@click.pass_obj
def rm_cmd(engine, containers, force, volumes) -> None:
    """Remove one or more containers"""
    _each(containers, lambda c: engine.containers.remove(c, force=force, volumes=volumes))


container.add_command(rm_cmd, "rm")
container.add_command(rm_cmd, "remove")


@cli.command("wait")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def wait_cmd(engine, containers) -> None:
    """Block until one or more containers stop, then print their exit codes"""
    _each(containers, engine.containers.wait, show=lambda name, code: code)


container.add_command(wait_cmd, "wait")


@cli.command("rename")
@click.argument("container_name")
@click.argument("new_name")
@click.pass_obj
def rename_cmd(engine, container_name, new_name) -> None:
    """Rename a container"""
    engine.containers.rename(container_name, new_name)


container.add_command(rename_cmd, "rename")


@cli.command("pause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def pause_cmd(engine, containers) -> None:
    """Pause all processes within one or more containers"""
    _each(containers, engine.containers.pause)


@cli.command("unpause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def unpause_cmd(engine, containers) -> None:
    """Unpause all processes within one or more containers"""
    _each(containers, engine.containers.unpause)


container.add_command(pause_cmd, "pause")
container.add_command(unpause_cmd, "unpause")


@container.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=<timestamp>")')
@click.pass_obj
def container_prune(engine, force, filters) -> None:
    """Remove all stopped containers"""
    if not force and not confirm("WARNING! This will remove all stopped containers."):
        return
    removed, space = engine.containers.prune(Filters.parse(filters))
    if removed:
        click.echo("Deleted Containers:")
        for cid in removed:
            click.echo(cid)
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(space)}")


# -- ps ----------------------------------------------------------------------------------------
from dockyard.engine.container_view import status_text  # noqa: E402,F401 - shared with the API


def ellipsis(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def go_quote(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
              "CreatedAt": "CREATED AT", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES", "Size": "SIZE",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS", "State": "STATE",
              "LocalVolumes": "LOCAL VOLUMES"}


@cli.command("ps")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
@click.option("-n", "--last", type=int, default=-1, help="Show n last created containers (includes all states)")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container (includes all states)")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.pass_obj
def ps_cmd(engine, all_, quiet, size, last, latest, no_trunc, filters, fmt) -> None:
    """List containers"""
    from datetime import datetime, timezone

    recs = engine.containers.list(all_=all_, filters=Filters.parse(filters), last=1 if latest else last)
    if quiet:
        for r in recs:
            click.echo(r.id if no_trunc else r.id[:12])
        return
    rows = []
    now = time.time()
    for r in recs:
        command = " ".join(r.spec.args)
        rows.append({
            "ID": r.id if no_trunc else r.id[:12],
            "Image": r.spec.image_name,
            "Command": go_quote(command if no_trunc else ellipsis(command, 20)),
            "RunningFor": human_duration(now - r.created) + " ago",
            "CreatedAt": datetime.fromtimestamp(r.created, timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
            "Status": status_text(r, now),
            "State": r.state,
            "Ports": engine.networks.ports_text(r),
            "Names": r.name,
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(r.spec.labels.items())),
            "Size": _size_text(engine, r) if size or (fmt and "Size" in fmt) else "",
            "Mounts": ",".join((m.name or m.source) if no_trunc else ellipsis(m.name or m.source, 15)
                               for m in r.spec.mounts),
            "Networks": ",".join(engine.networks.network_names(r)),
            "LocalVolumes": str(sum(1 for m in r.spec.mounts if m.type == "volume" and m.driver == "local")),
        })
    default = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    if size:
        default += "\t{{.Size}}"
    print_table(fmt, rows, default, PS_HEADERS)


def _size_text(engine, rec) -> str:
    rw = engine.containers.lifecycle.rw_size(rec)
    image = engine.image_store.db.image(rec.image_id)
    virtual = rw + (image.size if image else 0)
    return f"{human_size(rw)} (virtual {human_size(virtual)})"


container.add_command(ps_cmd, "ls")
container.add_command(ps_cmd, "list")
container.add_command(ps_cmd, "ps")
