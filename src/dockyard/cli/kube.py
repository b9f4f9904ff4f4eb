"""``dockyard kube generate``: Kubernetes manifests from compose files or running containers
(:mod:`dockyard.compose.kube` says what becomes what)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dockyard.cli.main import CONTEXT_SETTINGS, DockyardGroup, cli
from dockyard.errors import InvalidArgument


@cli.group("kube", cls=DockyardGroup, context_settings=CONTEXT_SETTINGS)
def kube() -> None:
    """Export compose projects and containers to Kubernetes"""


@kube.command("generate")
@click.option("-f", "--file", "files", multiple=True, help="Compose configuration files")
@click.option("-p", "--project-name", default=None, help="Project name")
@click.option("--profile", "profiles", multiple=True, help="Specify a profile to enable")
@click.option("--env-file", "env_files", multiple=True, help="Specify an alternate environment file")
@click.option("--project-directory", default=None, help="Specify an alternate working directory")
@click.option("--registry", default="", metavar="HOST:PORT", help="Rewrite image references to this registry")
@click.option("--service-type", default="ClusterIP", type=click.Choice(["ClusterIP", "NodePort", "LoadBalancer"]),
              help="Service type for services that publish ports")
@click.option("-o", "--output", default=None, help="Write the manifests to this file (default: stdout)")
@click.argument("containers", nargs=-1)
@click.pass_obj
def generate_cmd(engine, files, project_name, profiles, env_files, project_directory, registry, service_type,
                 output, containers) -> None:
    """Generate Kubernetes manifests from compose files or containers"""
    from dockyard.compose.kube import KubeOptions, generate, project_from_services

    def image_ports(name: str) -> list[str]:
        try:
            return sorted((engine.images.inspect(name).get("Config") or {}).get("ExposedPorts") or {})
        except Exception:  # noqa: BLE001 - an image that is not here: no ports to add
            return []

    opts = KubeOptions(registry=registry, service_type=service_type, read_file=lambda p: Path(p).read_text(),
                       image_ports=image_ports)
    if containers:
        if files:
            raise InvalidArgument("give compose files (-f) or containers, not both")
        from dockyard.compose.kube_containers import services_from_containers

        items = []
        for name in containers:
            rec = engine.containers.get(name)
            cfg = (engine.images.inspect(rec.image_id).get("Config") or {}) if rec.image_id else {}
            items.append((rec.spec, cfg))
        name, services, volumes = services_from_containers(items)
        project = project_from_services(project_name or name, services, volumes)
    else:
        from dockyard.cli.compose import ProjectOptions, load

        project = load(ProjectOptions(list(files), project_name, list(profiles), list(env_files), project_directory))
    result = generate(project, opts)
    for w in result.warnings:
        click.echo(f"WARNING: {w}", err=True)
    text = result.yaml()
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)
