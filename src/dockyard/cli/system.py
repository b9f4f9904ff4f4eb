"""``dockyard version`` and ``dockyard info``."""

from __future__ import annotations


import click

from dockyard.cli.main import cli
from dockyard.cli.render import print_formatted


@cli.command("version")
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
@click.pass_obj
def version(engine, fmt: str | None) -> None:
    """Show the dockyard version information"""
    v = engine.system.version()
    if fmt:
        print_formatted(fmt, [v])
        return
    c, s = v["Client"], v["Server"]
    lines = [
        "Client:",
        f" Version:           {c['Version']}",
        f" API version:       {c['ApiVersion']}",
        f" Python version:    {c['PythonVersion']}",
        f" OS/Arch:           {c['Os']}/{c['Arch']}",
        "",
        "Engine:",
        f" Version:          {s['Version']}",
        f"  API version:     {s['ApiVersion']} (minimum version {s['MinAPIVersion']})",
        f"  OS/Arch:         {s['Os']}/{s['Arch']}",
        f"  Kernel:          {s['KernelVersion']}",
    ]
    for comp in s["Components"][1:]:
        lines += [f" {comp['Name']}:", f"  Version:          {comp['Version'] or 'not installed'}"]
    click.echo("\n".join(lines))


@cli.command("info")
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
@click.pass_obj
def info(engine, fmt: str | None) -> None:
    """Display system-wide information"""
    i = engine.system.info()
    if fmt:
        print_formatted(fmt, [i])
        return
    lines = [
        "Client:",
        f" Version:    {engine.system.version()['Client']['Version']}",
        " Context:    default",
        " Debug Mode: false",
        "",
        "Server:",
        f" Containers: {i['Containers']}",
        f"  Running: {i['ContainersRunning']}",
        f"  Paused: {i['ContainersPaused']}",
        f"  Stopped: {i['ContainersStopped']}",
        f" Images: {i['Images']}",
        f" Server Version: {i['ServerVersion']}",
        f" Storage Driver: {i['Driver']}",
        *[f"  {k}: {v}" for k, v in i["DriverStatus"]],
        f" Cgroup Driver: {i['CgroupDriver']}",
        f" Cgroup Version: {i['CgroupVersion']}",
        f" Runtimes: {' '.join(i['Runtimes'])}",
        f" Default Runtime: {i['DefaultRuntime']}",
        f" runc version: {i['RuncVersion'] or 'not installed'}",
        f" conmon version: {i['ConmonVersion'] or 'not installed'}",
        f" Kernel Version: {i['KernelVersion']}",
        f" Operating System: {i['OperatingSystem']}",
        f" OSType: {i['OSType']}",
        f" Architecture: {i['Architecture']}",
        f" CPUs: {i['NCPU']}",
        f" Total Memory: {_gib(i['MemTotal'])}",
        f" Name: {i['Name']}",
        f" Docker Root Dir: {i['DockerRootDir']}",
        " Debug Mode: false",
        " Daemonless: true",
    ]
    click.echo("\n".join(lines))


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.4g}GiB"
