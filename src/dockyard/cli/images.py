"""Image commands: images/image ls, image inspect, tag, rmi, history, image prune, import, save, load,
image bootstrap.  Flags, output and errors follow the docker CLI."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from dockyard.cli.main import CONTEXT_SETTINGS, DockyardGroup, cli
from dockyard.cli.render import print_inspected, confirm, print_table
from dockyard.cli.units import human_duration, human_size
from dockyard.engine.options import Filters
from dockyard.engine.image_options import (
    ImageListOptions,
    ImagePruneOptions,
    ImageRemoveOptions,
    ImportOptions,
    SaveOptions,
)
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.oci.digest import short_id


@cli.group("image", cls=DockyardGroup, context_settings=CONTEXT_SETTINGS)
def image() -> None:
    """Manage images"""


def go_time(ts: float) -> str:
    """Go's time.Time String(): "2023-05-19 20:19:23 +0000 UTC"."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def since(ts: float) -> str:
    return human_duration(time.time() - ts) + " ago"


IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                 "Containers": "CONTAINERS", "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE",
                 "UniqueSize": "UNIQUE SIZE"}


def _image_rows(summaries, no_trunc: bool) -> list[dict]:
    rows = []
    for s in summaries:
        base = {
            "ID": s.id if no_trunc else short_id(s.id),
            "CreatedSince": since(s.created),
            "CreatedAt": go_time(s.created),
            "Size": human_size(s.size),
            "VirtualSize": human_size(s.size),
            "SharedSize": "N/A",
            "UniqueSize": "N/A",
            "Containers": str(s.containers) if s.containers else "N/A",
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())),
        }
        digests: dict[str, str] = {}
        for d in s.repo_digests:
            repo, _, dig = d.partition("@")
            digests.setdefault(repo, dig)
        if not s.repo_tags and not s.repo_digests:
            rows.append({**base, "Repository": "<none>", "Tag": "<none>", "Digest": "<none>"})
            continue
        seen_repos = set()
        for t in s.repo_tags:
            repo, _, tag = t.rpartition(":")
            seen_repos.add(repo)
            rows.append({**base, "Repository": repo, "Tag": tag, "Digest": digests.get(repo, "<none>")})
        for repo, dig in digests.items():
            if repo not in seen_repos:
                rows.append({**base, "Repository": repo, "Tag": "<none>", "Digest": dig})
    return rows


def _list_images(engine, repository, all_, quiet, digests, no_trunc, filters, fmt) -> None:
    f = Filters.parse(filters)
    if repository:
        f.values.setdefault("reference", []).append(repository)
    summaries = engine.images.list(ImageListOptions(all=all_, filters=f))
    rows = _image_rows(summaries, no_trunc)
    if quiet:  # one ID per row, as docker prints it (an image with two tags appears twice)
        for r in rows:
            click.echo(r["ID"])
        return
    default = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    if digests:
        default = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    print_table(fmt, rows, default, IMAGE_HEADERS)


_list_options = [
    click.argument("repository", required=False),
    click.option("-a", "--all", "all_", is_flag=True, help="Show all images (default hides intermediate images)"),
    click.option("-q", "--quiet", is_flag=True, help="Only show image IDs"),
    click.option("--digests", is_flag=True, help="Show digests"),
    click.option("--no-trunc", is_flag=True, help="Don't truncate output"),
    click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided"),
    click.option("--format", "fmt", default=None,
                 help="Format output using a custom template: 'table', 'table TEMPLATE', 'json', 'TEMPLATE'"),
]


def _with(options):
    def deco(f):
        for o in reversed(options):
            f = o(f)
        return f
    return deco


@cli.command("images")
@_with(_list_options)
@click.pass_obj
def images_cmd(engine, **kw) -> None:
    """List images"""
    _list_images(engine, kw["repository"], kw["all_"], kw["quiet"], kw["digests"], kw["no_trunc"],
                 kw["filters"], kw["fmt"])


@image.command("ls")
@_with(_list_options)
@click.pass_obj
def image_ls(engine, **kw) -> None:
    """List images"""
    _list_images(engine, kw["repository"], kw["all_"], kw["quiet"], kw["digests"], kw["no_trunc"],
                 kw["filters"], kw["fmt"])


image.add_command(image_ls, "list")


@image.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
@click.pass_obj
def image_inspect(engine, names, fmt) -> None:
    """Display detailed information on one or more images"""
    found, errors = [], []
    for n in names:
        try:
            found.append(engine.images.inspect(n))
        except DockyardError as exc:
            errors.append(str(exc))
    print_inspected(fmt, found, errors)


@cli.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_obj
def tag_cmd(engine, source, target) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"""
    engine.images.tag(source, target)


image.add_command(tag_cmd, "tag")


@cli.command("rmi")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Force removal of the image")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents")
@click.pass_obj
def rmi_cmd(engine, names, force, no_prune) -> None:
    """Remove one or more images"""
    failed = False
    for n in names:
        try:
            for item in engine.images.remove(n, ImageRemoveOptions(force=force, prune=not no_prune)):
                if item.untagged:
                    click.echo(f"Untagged: {item.untagged}")
                if item.deleted:
                    click.echo(f"Deleted: {item.deleted}")
        except DockyardError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        sys.exit(1)


image.add_command(rmi_cmd, "rm")
image.add_command(rmi_cmd, "remove")


@cli.command("history")
@click.argument("name")
@click.option("-H", "--human", type=bool, default=True, show_default=True,
              help="Print sizes and dates in human readable format")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.pass_obj
def history_cmd(engine, name, human, no_trunc, quiet, fmt) -> None:
    """Show the history of an image"""
    entries = engine.images.history(name)
    if quiet:
        for e in entries:
            click.echo(e.id if no_trunc or e.id == "<missing>" else short_id(e.id))
        return
    rows = []
    for e in entries:
        created_by = e.created_by.replace("\t", " ")
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append({
            "ID": e.id if no_trunc or e.id == "<missing>" else short_id(e.id),
            "CreatedSince": since(e.created) if human else datetime.fromtimestamp(e.created, timezone.utc).isoformat(),
            "CreatedAt": datetime.fromtimestamp(e.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "CreatedBy": created_by,
            "Size": human_size(e.size) if human else str(e.size),
            "Comment": e.comment,
            "Tags": ", ".join(e.tags),
        })
    headers = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
               "Size": "SIZE", "Comment": "COMMENT", "Tags": "TAGS"}
    print_table(fmt, rows, "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}", headers)


image.add_command(history_cmd, "history")


@image.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=<timestamp>")')
@click.pass_obj
def image_prune(engine, all_, force, filters) -> None:
    """Remove unused images"""
    warning = ("WARNING! This will remove all images without at least one container associated to them."
               if all_ else "WARNING! This will remove all dangling images.")
    if not force and not confirm(warning):
        return
    report = engine.images.prune(ImagePruneOptions(all=all_, filters=Filters.parse(filters)))
    if report.items:
        click.echo("Deleted Images:")
        for item in report.items:
            if item.untagged:
                click.echo(f"untagged: {item.untagged}")
            if item.deleted:
                click.echo(f"deleted: {item.deleted}")
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(report.reclaimed)}")


def _open_source(source: str):
    if source == "-":
        return sys.stdin.buffer
    if source.startswith(("http://", "https://")):
        import urllib.request

        try:
            return urllib.request.urlopen(source, timeout=60)  # noqa: S310 - user-given URL, as docker import
        except OSError as exc:
            raise InvalidArgument(f"error downloading {source}: {exc}") from exc
    try:
        return open(source, "rb")
    except OSError as exc:
        raise InvalidArgument(f"open {source}: {exc.strerror.lower() if exc.strerror else exc}") from exc


@cli.command("import")
@click.argument("source")
@click.argument("reference", required=False)
@click.option("-c", "--change", "changes", multiple=True, help="Apply Dockerfile instruction to the created image")
@click.option("-m", "--message", default="", help="Set commit message for imported image")
@click.option("--platform", default=None, help="Set platform if server is multi-platform capable")
@click.pass_obj
def import_cmd(engine, source, reference, changes, message, platform) -> None:
    """Import the contents from a tarball to create a filesystem image"""
    stream = _open_source(source)
    try:
        image_id = engine.images.import_(stream, ImportOptions(
            reference=reference, changes=list(changes), message=message, platform=platform,
            source_name=source))
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    click.echo(image_id)


image.add_command(import_cmd, "import")


@cli.command("save")
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Write to a file, instead of STDOUT")
@click.option("--format", "fmt", default="docker-archive", show_default=True,
              type=click.Choice(["docker-archive", "oci-archive", "oci-dir"]),
              help="docker-archive (also a valid OCI layout), oci-archive, or oci-dir (a directory)")
@click.pass_obj
def save_cmd(engine, names, output, fmt) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)"""
    opts = SaveOptions(names=list(names), format=fmt)
    if fmt == "oci-dir":
        if not output:
            raise InvalidArgument("the oci-dir format needs an output directory (-o DIR)")
        engine.images.save(opts, Path(output))
        return
    if output is None:
        if sys.stdout.isatty():
            raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        engine.images.save(opts, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    target = Path(output)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            engine.images.save(opts, f)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


image.add_command(save_cmd, "save")


@cli.command("load")
@click.option("-i", "--input", "input_", default=None, help="Read from tar archive file (or an OCI layout directory)")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
@click.pass_obj
def load_cmd(engine, input_, quiet) -> None:
    """Load an image from a tar archive or STDIN"""
    if input_ is None:
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is empty")
        report = engine.images.load(sys.stdin.buffer)
    else:
        p = Path(input_)
        if p.is_dir():
            report = engine.images.load(p)
        else:
            try:
                f = open(p, "rb")
            except OSError as exc:
                raise InvalidArgument(f"open {input_}: {(exc.strerror or str(exc)).lower()}") from exc
            with f:
                report = engine.images.load(f)
    if quiet:
        return
    for change in report.moved:
        from dockyard.oci.reference import parse_normalized

        click.echo(f"The image {parse_normalized(change.name).familiar_string()} already exists, renaming the old "
                   f"one with ID {change.old_image} to empty string")
    for image_id, tags in report.images:
        if tags:
            for t in tags:
                click.echo(f"Loaded image: {t}")
        else:
            click.echo(f"Loaded image ID: {image_id}")


image.add_command(load_cmd, "load")


@image.command("bootstrap")
@click.argument("names", nargs=-1, required=True)
@click.option("-q", "--quiet", is_flag=True, help="Only print the image ID")
@click.pass_obj
def image_bootstrap(engine, names, quiet) -> None:
    """Make a base image without a registry: busybox, debian:bookworm-slim, python:3.11-slim"""
    log = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    for n in names:
        image_id = engine.images.bootstrap(n, log)
        click.echo(image_id)
