"""``dockyard registry serve|gc``: run the private OCI registry, collect its garbage.

Configuration comes from ``--config FILE`` (YAML, documented in docs/registry.md) and then from
flags, which win; every configuration key has a flag.  The registry's ``--root`` is the storage
directory, not the engine's data root (the top-level ``dockyard --root``), which the registry
never touches.

``serve`` refuses to listen on a non-loopback address without authentication; with
``--workers N`` it forks N processes sharing the port (SO_REUSEPORT), restarting any that die,
and only the first runs the periodic online GC.  ``gc`` is safe while registries serve (see
``dockyard.registry.gc``).  ``registry user add|rm|ls`` lives in ``cli/registry_users.py``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dockyard.cli.main import CONTEXT_SETTINGS, DockyardGroup, cli
from dockyard.errors import InvalidArgument

_FLAGS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--config", "config_file", metavar="FILE", help="YAML configuration file"),
    click.option("--addr", metavar="HOST:PORT", help="Listen address (default 127.0.0.1:5000)"),
    click.option("--workers", type=int, help="Server processes sharing the port"),
    click.option("--root", metavar="DIR", help="Storage directory (filesystem driver)"),
    click.option("--storage", type=click.Choice(["filesystem", "azureblob"]), help="Storage driver"),
    click.option("--storage-opt", multiple=True, metavar="KEY=VALUE", help="Storage driver option"),
    click.option("--fsync/--no-fsync", default=None, help="fsync files before renaming them into place"),
    click.option("--auth", type=click.Choice(["none", "htpasswd", "token"]), help="Authentication"),
    click.option("--htpasswd", metavar="FILE", help="bcrypt htpasswd file"),
    click.option("--policy", metavar="FILE", help="Access policy file"),
    click.option("--anonymous", multiple=True, metavar="PATTERN", help="Repositories anyone may pull"),
    click.option("--auth-realm", metavar="REALM", help="Basic auth realm"),
    click.option("--token-realm", metavar="URL", help="Token endpoint URL clients are sent to"),
    click.option("--token-path", metavar="PATH", help="Path of the built-in token endpoint"),
    click.option("--token-service", metavar="NAME", help="Token service (audience)"),
    click.option("--token-issuer", metavar="NAME", help="Token issuer"),
    click.option("--token-key", metavar="FILE", help="Token signing key (PEM)"),
    click.option("--token-algorithm", metavar="ALG", help="Token signing algorithm (ES256, RS256)"),
    click.option("--token-expiry", metavar="DURATION", help="Access token lifetime"),
    click.option("--token-refresh-expiry", metavar="DURATION", help="Refresh token lifetime"),
    click.option("--tls-cert", metavar="FILE", help="TLS certificate (PEM)"),
    click.option("--tls-key", metavar="FILE", help="TLS private key (PEM)"),
    click.option("--tls-self-signed", is_flag=True, default=None, help="Serve TLS with a generated certificate"),
    click.option("--tls-dir", metavar="DIR", help="Where the self-signed certificate is kept"),
    click.option("--encryption-key", metavar="FILE", help="Master key: store every blob encrypted"),
    click.option("--encryption-previous-key", multiple=True, metavar="FILE",
                 help="An older master key still accepted for reading (key rotation)"),
    click.option("--notify", multiple=True, metavar="URL", help="Webhook URL for push/delete events"),
    click.option("--notify-header", multiple=True, metavar="NAME=VALUE", help="Header sent to --notify URLs"),
    click.option("--notify-timeout", metavar="DURATION", help="Webhook request timeout"),
    click.option("--notify-attempts", type=int, help="Webhook attempts per batch"),
    click.option("--notify-backoff", metavar="DURATION", help="First webhook retry delay (doubles)"),
    click.option("--notify-queue-size", type=int, help="Events queued per webhook"),
    click.option("--immutable", multiple=True, metavar="REPOS[:TAGS]", help="Make matching tags immutable"),
    click.option("--keep", multiple=True, metavar="REPOS[:TAGS]=N", help="Keep only the N newest tags"),
    click.option("--gc-grace", metavar="DURATION", help="Never collect blobs younger than this"),
    click.option("--gc-upload-max-age", metavar="DURATION", help="Remove uploads idle longer than this"),
    click.option("--gc-delete-untagged/--gc-keep-untagged", default=None, help="Collect untagged manifests"),
    click.option("--gc-interval", metavar="DURATION", help="Run online GC this often (serve)"),
    click.option("--log-level", "log_level", type=click.Choice(["debug", "info", "warning", "error"]),
                 help="Log level"),
    click.option("--access-log/--no-access-log", default=None, help="JSON access log lines"),
    click.option("--manifest-max-size", metavar="SIZE", help="Largest manifest accepted (default 4MiB)"),
    click.option("--delete/--no-delete", "delete_enabled", default=None, help="Allow DELETE"),
    click.option("--metrics/--no-metrics", default=None, help="Serve /metrics"),
]


def config_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for flag in reversed(_FLAGS):
        fn = flag(fn)
    return fn


def _pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _split_rule(spec: str) -> tuple[str, str]:
    repos, _, tag_pattern = spec.partition(":")
    return repos, tag_pattern or "*"


def build_config(opts: dict[str, Any]) -> Any:
    """The RegistryConfig for a command's options: file, then flags on top."""
    from dockyard.registry.config import (
        RepositoryRule,
        WebhookEndpoint,
        apply_overrides,
        load_config,
    )

    cfg = load_config(opts.get("config_file"))
    endpoints = [WebhookEndpoint(url=u) for u in opts.get("notify") or ()]
    notify_extra = {"headers": _pairs(opts.get("notify_header") or (), "--notify-header"),
                    "timeout": opts.get("notify_timeout"), "attempts": opts.get("notify_attempts"),
                    "backoff": opts.get("notify_backoff")}
    rules = [RepositoryRule(*_split_rule(s), immutable=True) for s in opts.get("immutable") or ()]
    for spec in opts.get("keep") or ():
        pattern, sep, n = spec.rpartition("=")
        if not sep or not n.isdigit():
            raise InvalidArgument(f"--keep {spec!r}: expected REPOS[:TAGS]=N")
        repos, tag_pattern = _split_rule(pattern)
        rules.append(RepositoryRule(repos, tag_pattern, keep=int(n)))
    apply_overrides(cfg, {
        "addr": opts.get("addr"), "workers": opts.get("workers"),
        "storage.root": opts.get("root"), "storage.driver": opts.get("storage"),
        "storage.options": _pairs(opts.get("storage_opt") or (), "--storage-opt") or None,
        "storage.fsync": opts.get("fsync"),
        "auth.type": opts.get("auth"), "auth.htpasswd": opts.get("htpasswd"), "auth.policy": opts.get("policy"),
        "auth.anonymous": list(opts.get("anonymous") or ()), "auth.realm": opts.get("auth_realm"),
        "auth.token.realm": opts.get("token_realm"), "auth.token.path": opts.get("token_path"),
        "auth.token.service": opts.get("token_service"), "auth.token.issuer": opts.get("token_issuer"),
        "auth.token.key": opts.get("token_key"), "auth.token.algorithm": opts.get("token_algorithm"),
        "auth.token.expiry": opts.get("token_expiry"),
        "auth.token.refresh_expiry": opts.get("token_refresh_expiry"),
        "tls.cert": opts.get("tls_cert"), "tls.key": opts.get("tls_key"),
        "tls.self_signed": opts.get("tls_self_signed"), "tls.self_signed_dir": opts.get("tls_dir"),
        "encryption.key_file": opts.get("encryption_key"),
        "encryption.previous_key_files": list(opts.get("encryption_previous_key") or ()),
        "notifications.queue_size": opts.get("notify_queue_size"),
        "rules": rules,
        "gc.grace_period": opts.get("gc_grace"), "gc.upload_max_age": opts.get("gc_upload_max_age"),
        "gc.delete_untagged": opts.get("gc_delete_untagged"), "gc.interval": opts.get("gc_interval"),
        "log.level": opts.get("log_level"), "log.access_log": opts.get("access_log"),
        "manifest_max_bytes": opts.get("manifest_max_size"), "delete_enabled": opts.get("delete_enabled"),
        "metrics": opts.get("metrics"),
    })
    for ep in endpoints:
        apply_overrides(ep, {k: v for k, v in notify_extra.items() if v})
    cfg.notifications.endpoints.extend(endpoints)
    return cfg


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    access = logging.getLogger("dockyard.registry.access")
    raw = logging.StreamHandler(sys.stderr)
    raw.setFormatter(logging.Formatter("%(message)s"))
    access.handlers[:] = [raw]
    access.propagate = False


def _ssl_context(cfg: Any) -> Any:
    if not cfg.tls.enabled:
        return None
    from dockyard.registry.config import parse_addr
    from dockyard.registry.tls import DEFAULT_HOSTS, self_signed, server_ssl_context

    if not cfg.tls.self_signed:
        return server_ssl_context(cfg.tls.cert, cfg.tls.key)
    host, _ = parse_addr(cfg.addr)
    hosts = [*DEFAULT_HOSTS, *([host] if host and host not in DEFAULT_HOSTS + ("0.0.0.0", "::") else [])]
    if cfg.tls.self_signed_dir:
        directory = Path(cfg.tls.self_signed_dir)
    elif cfg.storage.driver == "filesystem":
        root = Path(cfg.storage.root).resolve()
        directory = root.parent / f"{root.name}-tls"
    else:
        directory = Path.home() / ".config" / "dockyard" / "registry-tls"
    cert, key = directory / "cert.pem", directory / "key.pem"
    self_signed(cert, key, hosts)
    click.echo(f"registry: self-signed certificate {cert}", err=True)
    return server_ssl_context(cert, key)


def _serve_one(cfg: Any, ssl_context: Any, reuse_port: bool, run_gc: bool) -> None:
    from aiohttp import web

    from dockyard.registry.app import make_app
    from dockyard.registry.config import parse_addr

    host, port = parse_addr(cfg.addr)
    app = make_app(cfg, run_gc=run_gc)
    scheme = "https" if ssl_context else "http"
    where = cfg.storage.root if cfg.storage.driver == "filesystem" else cfg.storage.driver
    web.run_app(app, host=host or None, port=port, ssl_context=ssl_context, access_log=None,
                reuse_port=reuse_port or None, handle_signals=True, shutdown_timeout=5,
                print=lambda _: click.echo(
                    f"registry: serving {scheme}://{cfg.addr}/v2/ (pid {os.getpid()}, storage "
                    f"{where}, auth {cfg.auth.type})", err=True))


def _serve_workers(cfg: Any, ssl_context: Any) -> None:
    """Fork ``cfg.workers`` servers on one port; restart any that die until told to stop."""
    children: dict[int, int] = {}
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                _serve_one(cfg, ssl_context, reuse_port=True, run_gc=index == 0)
            finally:
                os._exit(0)
        children[pid] = index

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for i in range(cfg.workers):
        spawn(i)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, None)
        if index is not None and not stopping:
            click.echo(f"registry: worker {pid} exited ({status}); restarting", err=True)
            time.sleep(0.5)
            spawn(index)


@cli.group("registry", cls=DockyardGroup, context_settings=CONTEXT_SETTINGS)
def registry() -> None:
    """Run a private OCI registry (Distribution spec v1.1)"""


@registry.command("serve")
@config_options
def serve(**opts: Any) -> None:
    """Serve the registry API (refuses a public address without authentication)"""
    cfg = build_config(opts).validate()
    _setup_logging(cfg.log.level)
    ssl_context = _ssl_context(cfg)
    if cfg.workers > 1:
        _serve_workers(cfg, ssl_context)
    else:
        _serve_one(cfg, ssl_context, reuse_port=False, run_gc=True)


@registry.command("gc")
@click.option("--dry-run", is_flag=True, help="Report what would be freed; change nothing")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON")
@config_options
def gc(dry_run: bool, as_json: bool, **opts: Any) -> None:
    """Free blobs nothing references and uploads of killed pushes (safe while serving)"""
    import asyncio

    from dockyard.registry.app import open_storage
    from dockyard.registry.gc import collect
    from dockyard.registry.storage.layout import Layout

    cfg = build_config(opts)
    _setup_logging(cfg.log.level)

    async def run() -> Any:
        storage = open_storage(cfg)
        try:
            return await collect(Layout(storage), cfg.gc, dry_run=dry_run)
        finally:
            await storage.close()

    report = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    for digest, size in report.deleted_blobs:
        click.echo(f"{'would delete' if dry_run else 'deleted'} blob {digest} ({size} bytes)")
    for repo, digest in report.deleted_manifests:
        click.echo(f"{'would delete' if dry_run else 'deleted'} manifest {repo}@{digest}")
    for repo, upload_id, size in report.deleted_uploads:
        click.echo(f"{'would delete' if dry_run else 'deleted'} upload {repo}/{upload_id} ({size} bytes)")
    for err in report.errors:
        click.echo(f"warning: {err}", err=True)
    click.echo(report.summary())


# `registry user add|rm|ls` (the auth part) attaches itself to the group above.
try:
    from dockyard.cli import registry_users  # noqa: F401
except ImportError:
    pass
