"""``dockyard volume create/ls/inspect/rm/prune/sync`` and ``dockyard system df [-v]``, with Docker's
flags and output.  Errors the engine reports print as ``Error response from daemon: ...`` and exit 1,
as the docker CLI's volume commands do."""

from __future__ import annotations

import re
import sys
import time
from functools import partial
from typing import Any

import click

from dockyard.cli.container_io import system_group
from dockyard.cli.main import CONTEXT_SETTINGS, DockyardGroup, cli
from dockyard.cli.render import daemon_call, key_values, print_inspected, confirm, print_table
from dockyard.cli.units import human_duration, human_size
from dockyard.engine.options import Filters
from dockyard.errors import DockyardError, NotFound


@cli.group("volume", cls=DockyardGroup, context_settings=CONTEXT_SETTINGS)
def volume() -> None:
    """Manage volumes"""


@volume.command("create")
@click.argument("name", required=False, default="")
@click.option("-d", "--driver", default="local", help="Specify volume driver name")
@click.option("--label", "labels", multiple=True, help="Set metadata for a volume")
@click.option("-o", "--opt", "opts", multiple=True, help="Set driver specific options")
@click.option("--name", "name_flag", default="", hidden=True, help="Specify volume name")
@click.pass_obj
def volume_create(engine, name, driver, labels, opts, name_flag) -> None:
    """Create a volume"""
    from dockyard.engine.volumes import VolumeCreateOptions

    if name and name_flag:
        raise click.UsageError("conflicting options: either specify --name or provide positional arg, not both")
    o = VolumeCreateOptions(name=name or name_flag, driver=driver, driver_opts=key_values(opts), labels=key_values(labels))
    rec = daemon_call(lambda: engine.volumes.create(o))
    click.echo(rec.name)


class VolumeRow:
    """A row of ``volume ls`` for ``--format``: fields and the ``.Label "key"`` method, as Docker's."""

    def __init__(self, rec) -> None:
        self._rec = rec
        self.Name = rec.name
        self.Driver = rec.driver
        self.Scope = rec.scope
        self.Mountpoint = rec.mountpoint
        self.Labels = ",".join(f"{k}={v}" for k, v in sorted(rec.labels.items()))
        self.Links = "N/A"
        self.Size = "N/A"
        self.Group = "N/A"
        self.Availability = "N/A"
        self.Status = "N/A"

    def Label(self, name: str) -> str:  # Go's method name, as templates call it
        return self._rec.labels.get(name, "")

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


VOLUME_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
                  "Labels": "LABELS", "Label": "LABEL", "Links": "LINKS", "Size": "SIZE", "Group": "GROUP",
                  "Availability": "AVAILABILITY", "Status": "STATUS"}


def _natural(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names")
@click.option("-f", "--filter", "filters", multiple=True, help="Provide filter values (e.g. \"dangling=true\")")
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.option("--cluster", is_flag=True, hidden=True, help="Display only cluster volumes")
@click.pass_obj
def volume_ls(engine, quiet, filters, fmt, cluster) -> None:
    """List volumes"""
    f = Filters.parse(filters)
    recs = sorted(daemon_call(lambda: engine.volumes.list(f)), key=lambda r: _natural(r.name))
    if quiet:
        for r in recs:
            click.echo(r.name)
        return
    rows: list[Any] = [VolumeRow(r) for r in recs]  # objects: ``.Label "k"`` is a method
    print_table(fmt, rows, "table {{.Driver}}\t{{.Name}}", VOLUME_HEADERS)


volume.add_command(volume_ls, "list")


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
@click.pass_obj
def volume_inspect(engine, names, fmt) -> None:
    """Display detailed information on one or more volumes"""
    from dockyard.engine.volumes import volume_view

    found, errors = [], []
    for n in names:
        try:
            found.append(volume_view(engine.volumes.inspect(n)))
        except NotFound:
            errors.append(f"No such volume: {n}")
        except DockyardError as exc:
            errors.append(str(exc))
    print_inspected(fmt, found, errors)


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Force the removal of one or more volumes")
@click.pass_obj
def volume_rm(engine, names, force) -> None:
    """Remove one or more volumes. You cannot remove a volume that is in use by a container."""
    errors = []
    for n in names:
        try:
            engine.volumes.remove(n, force=force)
            click.echo(n)
        except DockyardError as exc:
            errors.append(f"Error response from daemon: {exc}")
    if errors:
        click.echo("\n".join(errors), err=True)
        sys.exit(1)


volume.add_command(volume_rm, "remove")


@volume.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused volumes, not just anonymous ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "label=<label>")')
@click.pass_obj
def volume_prune(engine, all_, force, filters) -> None:
    """Remove unused local volumes"""
    from dockyard.engine.volumes import VolumePruneOptions

    f = Filters.parse(filters)
    everything = all_ or any(v.lower() in ("1", "true") for v in f.get("all"))
    what = "all local volumes" if everything else "anonymous local volumes"
    if not force and not confirm(f"WARNING! This will remove {what} not used by at least one container."):
        return
    report = daemon_call(lambda: engine.volumes.prune(VolumePruneOptions(all=all_, filters=f)))
    if report.deleted:
        click.echo("Deleted Volumes:")
        for name in report.deleted:
            click.echo(name)
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(report.reclaimed)}")


@volume.command("sync")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def volume_sync(engine, names) -> None:
    """Synchronise volumes with their remote store now (drivers that have one, e.g. azureblob)"""
    for n in names:
        daemon_call(partial(engine.volumes.sync, n))
        click.echo(n)


# -- system df ---------------------------------------------------------------------------------
DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
              "Reclaimable": "RECLAIMABLE"}


def _reclaimable(reclaimable: int, total: int) -> str:
    if total > 0:
        return f"{human_size(reclaimable)} ({reclaimable * 100 // total}%)"
    return human_size(reclaimable)


def _ago(ts: float) -> str:
    return human_duration(time.time() - ts) + " ago"


@system_group.command("df")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed information on space usage")
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.pass_obj
def system_df(engine, verbose, fmt) -> None:
    """Show dockyard disk usage"""
    from dockyard.cli.containers import ellipsis, go_quote, status_text
    from dockyard.engine.image_options import ImageListOptions

    images = engine.images.list(ImageListOptions())
    containers = engine.containers.list(all_=True)
    usage = engine.volumes.usage()
    rw = {c.id: engine.containers.lifecycle.rw_size(c) for c in containers}

    img_total = sum(i.size for i in images)
    img_used = sum(i.size for i in images if i.containers)
    ctr_total = sum(rw.values())
    ctr_reclaim = sum(rw[c.id] for c in containers if not c.running)
    vol_total = sum(u.size for u in usage if u.size >= 0)
    vol_reclaim = sum(u.size for u in usage if u.size >= 0 and u.links == 0)
    if not verbose:
        rows = [
            {"Type": "Images", "TotalCount": str(len(images)), "Active": str(sum(1 for i in images if i.containers)),
             "Size": human_size(img_total), "Reclaimable": _reclaimable(img_total - img_used, img_total)},
            {"Type": "Containers", "TotalCount": str(len(containers)),
             "Active": str(sum(1 for c in containers if c.running)), "Size": human_size(ctr_total),
             "Reclaimable": _reclaimable(ctr_reclaim, ctr_total)},
            {"Type": "Local Volumes", "TotalCount": str(len(usage)),
             "Active": str(sum(1 for u in usage if u.links)), "Size": human_size(vol_total),
             "Reclaimable": _reclaimable(vol_reclaim, vol_total)},
            {"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"},
        ]
        print_table(fmt, rows, "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
                    DF_HEADERS)
        return

    click.echo("Images space usage:\n")
    img_rows = []
    for i in images:
        base = {"ID": i.id.removeprefix("sha256:")[:12], "CreatedSince": _ago(i.created), "Size": human_size(i.size),
                "SharedSize": "0B", "UniqueSize": human_size(i.size), "Containers": str(i.containers)}
        tags = i.repo_tags or ["<none>:<none>"]
        for t in tags:
            repo, _, tag = t.rpartition(":")
            img_rows.append({**base, "Repository": repo, "Tag": tag})
    print_table(None, img_rows, "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
                "\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
                {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED",
                 "Size": "SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
                 "Containers": "CONTAINERS"})
    click.echo("\nContainers space usage:\n")
    ctr_rows = [{"ID": c.id[:12], "Image": c.spec.image_name, "Command": go_quote(ellipsis(" ".join(c.spec.args), 20)),
                 "LocalVolumes": str(sum(1 for m in c.spec.mounts if m.type == "volume" and m.driver == "local")),
                 "Size": human_size(rw[c.id]), "RunningFor": _ago(c.created), "Status": status_text(c),
                 "Names": c.name} for c in containers]
    print_table(None, ctr_rows, "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}"
                "\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
                {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "LocalVolumes": "LOCAL VOLUMES",
                 "Size": "SIZE", "RunningFor": "CREATED", "Status": "STATUS", "Names": "NAMES"})
    click.echo("\nLocal Volumes space usage:\n")
    vol_rows = [{"Name": u.volume.name, "Links": str(u.links), "Size": human_size(u.size) if u.size >= 0 else "N/A"}
                for u in sorted(usage, key=lambda u: _natural(u.volume.name))]
    print_table(None, vol_rows, "table {{.Name}}\t{{.Links}}\t{{.Size}}",
                {"Name": "VOLUME NAME", "Links": "LINKS", "Size": "SIZE"})
    click.echo("\nBuild cache usage: 0B\n")
    print_table(None, [], "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}"
                "\t{{.UsageCount}}\t{{.Shared}}",
                {"ID": "CACHE ID", "CacheType": "CACHE TYPE", "Size": "SIZE", "CreatedSince": "CREATED",
                 "LastUsedSince": "LAST USED", "UsageCount": "USAGE", "Shared": "SHARED"})
