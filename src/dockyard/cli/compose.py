"""``dockyard compose``: docker compose v2's commands over :mod:`dockyard.compose`.

Finding the project (compose's rules): ``-f`` files in order (``-`` is stdin), else COMPOSE_FILE
(paths separated by ``:``), else the first of compose.yaml, compose.yml, docker-compose.yaml,
docker-compose.yml in the current directory or a parent, plus its ``.override`` file.  The project
directory is ``--project-directory`` or the first file's directory; ``.env`` there (or
``--env-file``) feeds interpolation.

Exit codes are compose v2's: 14 when a compose file is missing, 15 for an invalid one (the file, the
path inside it and what is wrong; nothing is started), 17 for a failed build, 18 for a failed pull,
1 for other failures of a command, 130 on Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from dockyard.cli.main import CONTEXT_SETTINGS, DockyardGroup, cli
from dockyard.errors import DockyardError, InvalidArgument, NotFound

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDES = {"compose.yaml": "compose.override.yaml", "compose.yml": "compose.override.yml",
             "docker-compose.yaml": "docker-compose.override.yaml",
             "docker-compose.yml": "docker-compose.override.yml"}
EXIT_NOT_FOUND, EXIT_PARSE = 14, 15


@dataclass
class ProjectOptions:
    files: list[str] = field(default_factory=list)
    project_name: str | None = None
    profiles: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    project_directory: str | None = None
    quiet_progress: bool = False


def find_files(start: Path) -> list[Path]:
    d = start.resolve()
    while True:
        for name in DEFAULT_FILES:
            if (d / name).is_file():
                found = [d / name]
                override = d / OVERRIDES[name]
                if override.is_file():
                    found.append(override)
                return found
        if d.parent == d:
            return []
        d = d.parent


def load(opts: ProjectOptions, *, allow_missing: bool = False):
    """The Project of the options; exits 14/15 as compose does.  ``allow_missing`` (down, ps, ...
    with ``-p``): no compose file gives an empty project of that name, found again by labels."""
    from dockyard.compose.loader import load_project, normalize_project_name
    from dockyard.compose.model import Project

    cwd = Path.cwd()
    files: list[Path | str] = []
    names = list(opts.files) or [f for f in os.environ.get("COMPOSE_FILE", "").split(os.pathsep) if f]
    if names:
        base = Path(opts.project_directory) if opts.project_directory else cwd
        files = ["-" if n == "-" else (base / n if not os.path.isabs(n) else Path(n)) for n in names]
    else:
        files = list(find_files(Path(opts.project_directory) if opts.project_directory else cwd))
    if not files:
        if allow_missing and opts.project_name:
            return Project(name=normalize_project_name(opts.project_name), working_dir=str(cwd))
        _fail("no configuration file provided: not found", EXIT_NOT_FOUND)
    texts: list[tuple[str, str]] = []
    for f in files:
        if f == "-":
            texts.append((str(cwd / "-"), sys.stdin.read()))
            continue
        try:
            texts.append((str(Path(f).absolute()), Path(f).read_text()))
        except OSError as exc:
            _fail(f"open {Path(f).absolute()}: {(exc.strerror or str(exc)).lower()}", EXIT_NOT_FOUND)
    first = Path(texts[0][0])
    workdir = Path(opts.project_directory).absolute() if opts.project_directory else first.parent
    dotenv_text, dotenv_path = None, str(workdir / ".env")
    env_files = opts.env_files or ([str(workdir / ".env")] if (workdir / ".env").is_file() else [])
    if env_files:
        chunks = []
        for ef in env_files:
            try:
                chunks.append(Path(ef).read_text())
            except OSError as exc:
                _fail(f"couldn't find env file: {Path(ef).absolute()}: {(exc.strerror or '').lower()}",
                      EXIT_NOT_FOUND)
        dotenv_text, dotenv_path = "\n".join(chunks), env_files[-1]

    def read_file(path: str) -> str:
        try:
            return Path(path).read_text()
        except FileNotFoundError:
            raise NotFound(f"env file {path} not found: stat {path}: no such file or directory") from None
        except OSError as exc:
            raise InvalidArgument(f"{path}: {exc.strerror or exc}") from None

    try:
        return load_project(texts, project_name=opts.project_name, working_dir=str(workdir),
                            environ=dict(os.environ), dotenv_text=dotenv_text, dotenv_path=dotenv_path,
                            profiles=opts.profiles, read_file=read_file)
    except DockyardError as exc:
        _fail(str(exc), EXIT_NOT_FOUND if isinstance(exc, NotFound) else EXIT_PARSE)


def _fail(message: str, code: int):
    click.echo(message, err=True)
    sys.exit(code)


@dataclass
class Ctx:
    engine: object
    opts: ProjectOptions

    def project(self, allow_missing: bool = False):
        return load(self.opts, allow_missing=allow_missing)

    def compose(self, allow_missing: bool = False, quiet: bool = False):
        from dockyard.cli.compose_output import CliReporter
        from dockyard.compose.project import ComposeProject

        return ComposeProject(self.engine, self.project(allow_missing),
                              CliReporter(quiet=quiet or self.opts.quiet_progress))


class ComposeGroup(DockyardGroup):
    """Compose failures exit 1 with the message (compose's), not the engine's 125."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DockyardError as exc:
            if exc.exit_code in (125,):
                exc.exit_code = 1
            raise


@cli.group("compose", cls=ComposeGroup, context_settings=CONTEXT_SETTINGS)
@click.option("-f", "--file", "files", multiple=True, help="Compose configuration files")
@click.option("-p", "--project-name", default=None, help="Project name")
@click.option("--profile", "profiles", multiple=True, help="Specify a profile to enable")
@click.option("--env-file", "env_files", multiple=True, help="Specify an alternate environment file")
@click.option("--project-directory", default=None,
              help="Specify an alternate working directory (default: the path of the first Compose file)")
@click.option("--progress", default="auto", type=click.Choice(["auto", "tty", "plain", "json", "quiet"]),
              help="Set type of progress output")
@click.pass_context
def compose(ctx: click.Context, files, project_name, profiles, env_files, project_directory, progress) -> None:
    """Define and run multi-container applications"""
    ctx.obj = Ctx(ctx.obj, ProjectOptions(list(files), project_name, list(profiles), list(env_files),
                                          project_directory, progress == "quiet"))


def _services(c, names) -> list[str] | None:
    for n in names:
        c.project.service(n)
    return list(names) or None


# -- up / down -----------------------------------------------------------------------------------
@compose.command("up")
@click.option("-d", "--detach", is_flag=True, help="Detached mode: Run containers in the background")
@click.option("--build", is_flag=True, help="Build images before starting containers")
@click.option("--no-build", is_flag=True, help="Don't build an image, even if it's policy")
@click.option("--pull", default="", type=click.Choice(["", "always", "missing", "never", "build"]),
              help='Pull image before running ("always"|"missing"|"never")')
@click.option("--scale", multiple=True, help="Scale SERVICE to NUM instances (SERVICE=NUM)")
@click.option("--wait", is_flag=True, help="Wait for services to be running|healthy. Implies detached mode.")
@click.option("--wait-timeout", type=float, default=None, help="Maximum duration in seconds to wait")
@click.option("--force-recreate", is_flag=True, help="Recreate containers even if their configuration hasn't changed")
@click.option("--no-recreate", is_flag=True, help="If containers already exist, don't recreate them")
@click.option("--no-deps", is_flag=True, help="Don't start linked services")
@click.option("--no-start", is_flag=True, help="Don't start the services after creating them")
@click.option("--remove-orphans", is_flag=True, help="Remove containers for services not defined in the Compose file")
@click.option("-t", "--timeout", type=int, default=None, help="Shutdown timeout in seconds")
@click.option("--no-color", is_flag=True, help="Produce monochrome output")
@click.option("--no-log-prefix", is_flag=True, help="Don't print prefix in logs")
@click.argument("services", nargs=-1)
@click.pass_obj
def up_cmd(ctx: Ctx, detach, build, no_build, pull, scale, wait, wait_timeout, force_recreate, no_recreate,
           no_deps, no_start, remove_orphans, timeout, no_color, no_log_prefix, services) -> None:
    """Create and start containers"""
    from dockyard.compose.plan import parse_scale
    from dockyard.compose.project import UpOptions

    if build and no_build:
        raise InvalidArgument("--build and --no-build are incompatible")
    if force_recreate and no_recreate:
        raise InvalidArgument("--force-recreate and --no-recreate are incompatible")
    c = ctx.compose()
    opts = UpOptions(services=list(services), build=build, no_build=no_build, pull=pull,
                     force_recreate=force_recreate, no_recreate=no_recreate, no_deps=no_deps, no_start=no_start,
                     remove_orphans=remove_orphans, scale=parse_scale(scale, set(c.project.services)),
                     wait=wait, wait_timeout=wait_timeout, timeout=timeout)
    targets = c.up(opts)
    if detach or wait or no_start:
        return
    from dockyard.cli.compose_output import print_logs

    recs = c.containers(targets)
    try:
        print_logs(ctx.engine, recs, follow=True, tail=None, since=None, until=None, timestamps=False,
                   colour=not no_color and sys.stdout.isatty(), prefix=not no_log_prefix)
    except KeyboardInterrupt:
        click.echo("Gracefully stopping... (press Ctrl+C again to force)", err=True)
        c.stop(targets, timeout)
        sys.exit(130)


@compose.command("down")
@click.option("-v", "--volumes", is_flag=True, help="Remove named volumes declared in the volumes section and anonymous volumes")
@click.option("--rmi", default="", type=click.Choice(["", "local", "all"]), help='Remove images used by services')
@click.option("--remove-orphans", is_flag=True, help="Remove containers for services not defined in the Compose file")
@click.option("-t", "--timeout", type=int, default=None, help="Specify a shutdown timeout in seconds")
@click.pass_obj
def down_cmd(ctx: Ctx, volumes, rmi, remove_orphans, timeout) -> None:
    """Stop and remove containers, networks"""
    from dockyard.compose.project import DownOptions

    ctx.compose(allow_missing=True).down(DownOptions(volumes=volumes, rmi=rmi, remove_orphans=remove_orphans,
                                                     timeout=timeout))


# -- images ------------------------------------------------------------------------------------
@compose.command("build")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image")
@click.option("--pull", is_flag=True, help="Always attempt to pull a newer version of the image")
@click.option("--build-arg", "build_args", multiple=True, help="Set build-time variables for services")
@click.option("-q", "--quiet", is_flag=True, help="Don't print anything to STDOUT")
@click.argument("services", nargs=-1)
@click.pass_obj
def build_cmd(ctx: Ctx, no_cache, pull, build_args, quiet, services) -> None:
    """Build or rebuild services"""
    c = ctx.compose(quiet=quiet)
    args = dict(a.split("=", 1) if "=" in a else (a, os.environ.get(a, "")) for a in build_args)
    c.build(_services(c, services), no_cache=no_cache, pull=pull, build_args=args)


@compose.command("pull")
@click.option("--ignore-pull-failures", is_flag=True, help="Pull what it can and ignores images with pull failures")
@click.option("-q", "--quiet", is_flag=True, help="Pull without printing progress information")
@click.argument("services", nargs=-1)
@click.pass_obj
def pull_cmd(ctx: Ctx, ignore_pull_failures, quiet, services) -> None:
    """Pull service images"""
    c = ctx.compose(quiet=quiet)
    c.pull(_services(c, services), ignore_failures=ignore_pull_failures)


@compose.command("push")
@click.option("-q", "--quiet", is_flag=True, help="Push without printing progress information")
@click.argument("services", nargs=-1)
@click.pass_obj
def push_cmd(ctx: Ctx, quiet, services) -> None:
    """Push service images"""
    c = ctx.compose(quiet=quiet)
    c.push(_services(c, services))


@compose.command("images")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.option("--format", "fmt", default=None, help="Format the output (table|json)")
@click.argument("services", nargs=-1)
@click.pass_obj
def images_cmd(ctx: Ctx, quiet, fmt, services) -> None:
    """List images used by the created containers"""
    from dockyard.cli.render import print_table
    from dockyard.cli.units import human_size

    c = ctx.compose(allow_missing=True)
    rows = []
    for r in c.containers(_services(c, services), oneoff=None):
        try:
            info = ctx.engine.images.inspect(r.image_id)
        except NotFound:
            info = {"Size": 0}
        repo, _, tag = r.spec.image_name.rpartition(":") if ":" in r.spec.image_name.split("/")[-1] else (
            r.spec.image_name, "", "latest")
        rows.append({"Container": r.name, "Repository": repo, "Tag": tag, "ID": r.image_id.removeprefix("sha256:")[:12],
                     "Size": human_size(info.get("Size") or 0)})
    if quiet:
        for row in dict.fromkeys(r["ID"] for r in rows):
            click.echo(row)
        return
    print_table(fmt, rows, "table {{.Container}}\t{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}",
                {"Container": "CONTAINER", "Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
                 "Size": "SIZE"})


@compose.command("config")
@click.option("--services", "show_services", is_flag=True, help="Print the service names, one per line")
@click.option("--volumes", "show_volumes", is_flag=True, help="Print the volume names, one per line")
@click.option("--networks", "show_networks", is_flag=True, help="Print the network names, one per line")
@click.option("--profiles", "show_profiles", is_flag=True, help="Print the profile names, one per line")
@click.option("--images", "show_images", is_flag=True, help="Print the image names, one per line")
@click.option("-q", "--quiet", is_flag=True, help="Only validate the configuration, don't print anything")
@click.option("--format", "fmt", default="yaml", type=click.Choice(["yaml", "json"]), help="Format the output")
@click.option("-o", "--output", default=None, help="Save to file (default to stdout)")
@click.pass_obj
def config_cmd(ctx: Ctx, show_services, show_volumes, show_networks, show_profiles, show_images, quiet, fmt,
               output) -> None:
    """Parse, resolve and render compose file in canonical format"""
    from dockyard.compose import convert as cv
    from dockyard.compose.loader import render_config

    project = ctx.project()
    for w in project.warnings:
        click.echo(f"WARN[0000] {w}", err=True)
    if quiet:
        return
    lines: list[str] | None = None
    if show_services:
        lines = project.dependency_order()
    elif show_volumes:
        lines = sorted(project.volumes)
    elif show_networks:
        lines = sorted(project.networks)
    elif show_profiles:
        lines = sorted({p for s in [*project.services.values(), *project.disabled_services.values()]
                        for p in s.profiles})
    elif show_images:
        lines = [cv.image_name(project, project.services[n]) for n in sorted(project.services)]
    if lines is not None:
        text = "".join(f"{line}\n" for line in lines)
    else:
        text = render_config(project)
        if fmt == "json":
            import json

            import yaml

            text = json.dumps(yaml.safe_load(text), indent=2) + "\n"
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


# -- containers ----------------------------------------------------------------------------------
PS_HEADERS = {"Name": "NAME", "Image": "IMAGE", "Command": "COMMAND", "Service": "SERVICE",
              "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "ID": "CONTAINER ID",
              "State": "STATE", "Health": "HEALTH", "ExitCode": "EXIT CODE", "Project": "PROJECT"}


@compose.command("ps")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all stopped containers")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.option("--services", "show_services", is_flag=True, help="Display services")
@click.option("--format", "fmt", default=None, help="Format the output (table|json|TEMPLATE)")
@click.option("--status", "statuses", multiple=True, help="Filter services by status")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.argument("services", nargs=-1)
@click.pass_obj
def ps_cmd(ctx: Ctx, all_, quiet, show_services, fmt, statuses, no_trunc, services) -> None:
    """List containers"""
    import time

    from dockyard.cli.containers import ellipsis, go_quote
    from dockyard.cli.render import print_table
    from dockyard.cli.units import human_duration
    from dockyard.compose import convert as cv
    from dockyard.engine.container_view import status_text

    c = ctx.compose(allow_missing=True)
    recs = [r for r in c.containers(_services(c, services), stopped=all_ or bool(statuses), oneoff=None)
            if not statuses or r.state in statuses]
    if quiet:
        for r in recs:
            click.echo(r.id if no_trunc else r.id[:12])
        return
    if show_services:
        for name in dict.fromkeys(r.spec.labels.get(cv.SERVICE, "") for r in recs):
            click.echo(name)
        return
    now = time.time()
    rows = []
    for r in recs:
        command = " ".join(r.spec.args)
        rows.append({
            "ID": r.id if no_trunc else r.id[:12], "Name": r.name, "Image": r.spec.image_name,
            "Command": go_quote(command if no_trunc else ellipsis(command, 20)),
            "Project": r.spec.labels.get(cv.PROJECT, ""), "Service": r.spec.labels.get(cv.SERVICE, ""),
            "RunningFor": human_duration(now - r.created) + " ago", "Status": status_text(r, now),
            "State": r.state, "Health": (r.health or {}).get("Status", "") if r.spec.healthcheck else "",
            "ExitCode": r.exit_code, "Ports": ctx.engine.networks.ports_text(r),
            "Publishers": [{"URL": m.host_ip or "0.0.0.0", "TargetPort": m.container_port,
                            "PublishedPort": m.host_port, "Protocol": m.protocol}
                           for m in (ctx.engine.networks.ports(r.id) if r.state == "running" else [])],
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(r.spec.labels.items())),
        })
    print_table(fmt, rows, "table {{.Name}}\t{{.Image}}\t{{.Command}}\t{{.Service}}\t{{.RunningFor}}\t{{.Status}}"
                "\t{{.Ports}}", PS_HEADERS)


@compose.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end of the logs for each container")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--since", default=None, help="Show logs since timestamp or relative (e.g. 42m)")
@click.option("--until", default=None, help="Show logs before a timestamp or relative (e.g. 42m)")
@click.option("--no-color", is_flag=True, help="Produce monochrome output")
@click.option("--no-log-prefix", is_flag=True, help="Don't print prefix in logs")
@click.option("--index", type=int, default=None, help="index of the container if service has multiple replicas")
@click.argument("services", nargs=-1)
@click.pass_obj
def logs_cmd(ctx: Ctx, follow, tail, timestamps, since, until, no_color, no_log_prefix, index, services) -> None:
    """View output from containers"""
    from dockyard.cli.compose_output import print_logs
    from dockyard.compose import convert as cv

    c = ctx.compose(allow_missing=True)
    recs = c.containers(_services(c, services), oneoff=None)
    if index is not None:
        recs = [r for r in recs if r.spec.labels.get(cv.NUMBER) == str(index)]
    try:
        print_logs(ctx.engine, recs, follow=follow, tail=None if tail in ("all", "-1") else int(tail), since=since,
                   until=until, timestamps=timestamps, colour=not no_color and sys.stdout.isatty(),
                   prefix=not no_log_prefix)
    except KeyboardInterrupt:
        sys.exit(130)


@compose.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Detached mode: Run command in the background")
@click.option("-T", "--no-TTY", "no_tty", is_flag=True, help="Disable pseudo-TTY allocation")
@click.option("-u", "--user", default=None, help="Run the command as this user")
@click.option("-w", "--workdir", default=None, help="Path to workdir directory for this command")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the process")
@click.option("--index", type=int, default=1, help="Index of the container if service has multiple replicas")
@click.argument("service")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_cmd(ctx: Ctx, detach, no_tty, user, workdir, env, privileged, index, service, command) -> None:
    """Execute a command in a running container"""
    c = ctx.compose()
    rec = c.container(service, index)
    tty = not no_tty and not detach and sys.stdin.isatty() and sys.stdout.isatty()
    try:
        code = ctx.engine.containers.io.exec(rec.id, list(command), tty=tty, interactive=tty, detach=detach,
                                             env=list(env), user=user, workdir=workdir, privileged=privileged)
    except DockyardError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code if exc.exit_code in (126, 127) else 1)
    sys.exit(code)


@compose.command("run", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run container in background and print container ID")
@click.option("--rm", is_flag=True, help="Automatically remove the container when it exits")
@click.option("--name", default="", help="Assign a name to the container")
@click.option("--entrypoint", default=None, help="Override the entrypoint of the image")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("-l", "--label", "labels", multiple=True, help="Add or override a label")
@click.option("-u", "--user", default=None, help="Run as specified username or uid")
@click.option("-w", "--workdir", default="", help="Working directory inside the container")
@click.option("--no-deps", is_flag=True, help="Don't start linked services")
@click.option("-T", "--no-TTY", "no_tty", is_flag=True, help="Disable pseudo-TTY allocation")
@click.option("-i", "--interactive", is_flag=True, default=False, help="Keep STDIN open even if not attached")
@click.option("-P", "--service-ports", is_flag=True, help="Run command with the service's ports enabled")
@click.option("-p", "--publish", multiple=True, help="Publish a container's port(s) to the host")
@click.option("--build", is_flag=True, help="Build image before starting container")
@click.argument("service")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def run_cmd(ctx: Ctx, detach, rm, name, entrypoint, env, labels, user, workdir, no_deps, no_tty, interactive,
            service_ports, publish, build, service, command) -> None:
    """Run a one-off command on a service"""
    from dockyard.cli.container_io import run_attached
    from dockyard.compose.project import RunOptions

    c = ctx.compose()
    tty = not no_tty and not detach and sys.stdin.isatty() and sys.stdout.isatty()
    rec = c.run(RunOptions(service=service, command=list(command), entrypoint=entrypoint, env=list(env),
                           user=user, workdir=workdir, name=name,
                           labels=dict(lbl.split("=", 1) if "=" in lbl else (lbl, "") for lbl in labels),
                           rm=rm, no_deps=no_deps, service_ports=service_ports, publish=list(publish), tty=tty,
                           interactive=interactive or tty, attach=not detach, build=build))
    if detach:
        ctx.engine.containers.start(rec.id)
        click.echo(rec.id)
        return

    def discard() -> None:
        try:
            ctx.engine.containers.remove(rec.id, force=True, volumes=True)
        except DockyardError:
            pass

    sys.exit(run_attached(ctx.engine, rec, detach_keys="ctrl-p,ctrl-q", on_fail=discard))


def _lifecycle(verb: str, help_text: str, with_timeout: bool = True, stopped_ok: bool = True):
    def deco(fn):
        fn = click.argument("services", nargs=-1)(fn)
        if with_timeout:
            fn = click.option("-t", "--timeout", type=int, default=None, help="Specify a shutdown timeout in seconds")(fn)
        fn = click.pass_obj(fn)
        fn.__doc__ = help_text
        return compose.command(verb)(fn)
    return deco


@_lifecycle("start", "Start services", with_timeout=False)
def start_cmd(ctx: Ctx, services) -> None:
    c = ctx.compose()
    c.start(_services(c, services))


@_lifecycle("stop", "Stop services")
def stop_cmd(ctx: Ctx, timeout, services) -> None:
    c = ctx.compose(allow_missing=True)
    c.stop(_services(c, services), timeout)


@_lifecycle("restart", "Restart service containers")
def restart_cmd(ctx: Ctx, timeout, services) -> None:
    c = ctx.compose()
    c.restart(_services(c, services), timeout)


@compose.command("kill")
@click.option("-s", "--signal", default="SIGKILL", help='SIGNAL to send to the container')
@click.option("--remove-orphans", is_flag=True, help="Remove containers for services not defined in the Compose file")
@click.argument("services", nargs=-1)
@click.pass_obj
def kill_cmd(ctx: Ctx, signal, remove_orphans, services) -> None:
    """Force stop service containers"""
    c = ctx.compose(allow_missing=True)
    c.kill(_services(c, services), signal)


@compose.command("rm")
@click.option("-f", "--force", is_flag=True, help="Don't ask to confirm removal")
@click.option("-s", "--stop", is_flag=True, help="Stop the containers, if required, before removing")
@click.option("-v", "--volumes", is_flag=True, help="Remove any anonymous volumes attached to containers")
@click.argument("services", nargs=-1)
@click.pass_obj
def rm_cmd(ctx: Ctx, force, stop, volumes, services) -> None:
    """Removes stopped service containers"""
    c = ctx.compose(allow_missing=True)
    names = _services(c, services)
    stopped = [r for r in c.containers(names, oneoff=None) if not r.running]
    if not stopped and not stop:
        click.echo("No stopped containers", err=True)
        return
    if not force and not stop:
        click.echo(f"Going to remove {', '.join(r.name for r in stopped)}", err=True)
        click.echo("Are you sure? [yN] ", nl=False, err=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return
    c.rm(names, stop=stop, volumes=volumes)


@compose.command("top")
@click.argument("services", nargs=-1)
@click.pass_obj
def top_cmd(ctx: Ctx, services) -> None:
    """Display the running processes"""
    from dockyard.cli.format import tabwrite

    c = ctx.compose(allow_missing=True)
    for r in c.containers(_services(c, services), stopped=False, oneoff=None):
        titles, rows = ctx.engine.containers.io.top(r.id)
        click.echo(r.name)
        table = "\t".join(titles) + "\n" + "".join("\t".join(row) + "\n" for row in rows)
        click.echo(tabwrite(table, minwidth=0, tabwidth=1, padding=3))


@compose.command("port")
@click.option("--protocol", default="tcp", type=click.Choice(["tcp", "udp", "sctp"]), help="tcp or udp")
@click.option("--index", type=int, default=1, help="Index of the container if service has multiple replicas")
@click.argument("service")
@click.argument("private_port", type=int)
@click.pass_obj
def port_cmd(ctx: Ctx, protocol, index, service, private_port) -> None:
    """Print the public port for a port binding"""
    c = ctx.compose()
    rec = c.container(service, index)
    for m in ctx.engine.networks.ports(rec.id) if rec.state == "running" else []:
        if m.container_port == private_port and m.protocol == protocol:
            ip = m.host_ip or "0.0.0.0"
            click.echo(f"[{ip}]:{m.host_port}" if ":" in ip else f"{ip}:{m.host_port}")
            return
    raise InvalidArgument(f"no port {private_port}/{protocol} for container {rec.name}")


@compose.command("watch")
@click.option("--no-up", is_flag=True, help="Do not build & start services before watching")
@click.option("--interval", type=float, default=0.5, help="Seconds between two scans of the watched paths")
@click.argument("services", nargs=-1)
@click.pass_obj
def watch_cmd(ctx: Ctx, no_up, interval, services) -> None:
    """Watch build context for service and rebuild/refresh containers when files are updated"""
    from dockyard.compose.project import UpOptions
    from dockyard.compose.watch import Watcher

    c = ctx.compose()
    names = _services(c, services) or [n for n, s in sorted(c.project.services.items()) if s.watch]
    if not no_up:
        c.up(UpOptions(services=names, build=True))
    watcher = Watcher(c, names, interval=interval, log=lambda m: click.echo(m, err=True))
    try:
        watcher.run()
    except KeyboardInterrupt:
        sys.exit(0)


@compose.command("version")
@click.option("--short", is_flag=True, help="Shows only Compose's version number")
def version_cmd(short) -> None:
    """Show the Docker Compose version information"""
    from dockyard.compose.convert import COMPOSE_VERSION

    click.echo(COMPOSE_VERSION if short else f"Docker Compose version {COMPOSE_VERSION}")


@compose.command("ls")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all stopped Compose projects")
@click.option("-q", "--quiet", is_flag=True, help="Only display project names")
@click.option("--format", "fmt", default=None, help="Format the output (table|json)")
@click.pass_obj
def ls_cmd(ctx: Ctx, all_, quiet, fmt) -> None:
    """List running compose projects"""
    from dockyard.cli.render import print_table
    from dockyard.compose import convert as cv
    from dockyard.engine.options import Filters

    projects: dict[str, dict] = {}
    for r in ctx.engine.containers.list(all_=True, filters=Filters({"label": [cv.PROJECT]})):
        p = projects.setdefault(r.spec.labels[cv.PROJECT], {"states": {}, "files": ""})
        p["states"][r.state] = p["states"].get(r.state, 0) + 1
        p["files"] = r.spec.labels.get(cv.CONFIG_FILES, "")
    rows = []
    for name, p in sorted(projects.items()):
        if not all_ and "running" not in p["states"]:
            continue
        status = ", ".join(f"{state}({n})" for state, n in sorted(p["states"].items()))
        rows.append({"Name": name, "Status": status, "ConfigFiles": p["files"]})
    if quiet:
        for row in rows:
            click.echo(row["Name"])
        return
    print_table(fmt, rows, "table {{.Name}}\t{{.Status}}\t{{.ConfigFiles}}",
                {"Name": "NAME", "Status": "STATUS", "ConfigFiles": "CONFIG FILES"})
