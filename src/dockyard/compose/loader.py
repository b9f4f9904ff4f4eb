"""Compose files -> one validated, normalised :class:`~dockyard.compose.model.Project`.

The pipeline (compose-go's, step for step)::

    .env text ──parse_dotenv──► project environment = .env values, overridden by the shell environment
    each -f file ──YAML (1.2 scalars, !reset/!override, duplicate keys refused)──► documents
    the project name: -p, else COMPOSE_PROJECT_NAME, else the last file's `name:` (interpolated,
        normalised), else the project directory's basename (normalised); set as COMPOSE_PROJECT_NAME
    each document ──interpolate──► ──validate against compose-spec.json──►
        ──extends (same file or another, read through read_file)──► ──normalise (long syntax)──►
    all documents ──merge (the spec's rules, see normalize.py)──► canonical project
    ──profiles, defaults, env_file folded into environment, consistency checks──► Project

Pure: files are read by the caller.  The ``-f`` files come in as ``(path, text)``; ``env_file`` and
``extends.file`` are read through the ``read_file`` callback (absolute paths; it raises ``OSError``
or :class:`~dockyard.errors.NotFound` for a missing file).

Every error is :class:`~dockyard.errors.InvalidArgument`; it names the file, the path inside it
(``services.web.ports.0``), what is wrong in docker compose's words, and the line when known, e.g.::

    validating compose.yaml: services.web Additional property imagee is not allowed (line 3)
    compose.yaml: error while interpolating services.web.image: required variable TAG is missing a value: set it
    service "web" depends on undefined service "db": invalid compose project
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any, Final

import yaml

from dockyard.compose import normalize as nz
from dockyard.compose.dotenv import parse_dotenv
from dockyard.compose.interpolate import dotted, interpolate_tree, project_environment, substitute
from dockyard.compose.model import (
    BuildConfig,
    Dependency,
    DeployConfig,
    EnvFile,
    FileObject,
    FileReference,
    Healthcheck,
    Ipam,
    IpamPool,
    Logging,
    Network,
    Project,
    ResourceSpec,
    RestartPolicy,
    Service,
    ServiceNetwork,
    Ulimit,
    Volume,
    WatchRule,
    parse_bool,
)
from dockyard.compose.render import render_config
from dockyard.errors import InvalidArgument, NotFound

__all__ = ["load_project", "normalize_project_name", "parse_yaml", "render_config", "validate"]

ReadFile = Callable[[str], str]
Path = tuple[str | int, ...]
_PROJECT_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]*")
_RESTART: Final = re.compile(r"no|always|unless-stopped|on-failure(:\d+)?")


def load_project(
    files: Sequence[tuple[str, str]],
    *,
    project_name: str | None = None,
    working_dir: str,
    environ: Mapping[str, str],
    dotenv_text: str | None = None,
    profiles: Sequence[str] = (),
    read_file: ReadFile | None = None,
    dotenv_path: str = ".env",
) -> Project:
    """Load the ``-f`` files (in order, later ones override) into a project.

    ``working_dir`` is the absolute project directory (relative paths resolve against it).
    ``environ`` is the shell environment; ``dotenv_text`` the project's ``.env`` (``dotenv_path`` only
    names it in errors).  ``profiles`` are the ``--profile`` values; when empty, COMPOSE_PROFILES from
    the environment applies.  Services outside the active profiles land in
    ``Project.disabled_services`` (their ``env_file`` is not read).
    """
    if not files:
        raise InvalidArgument("no configuration file provided: not found")
    if not working_dir.startswith("/"):
        raise InvalidArgument(f"the project directory must be an absolute path, not {working_dir!r}")
    working_dir = posixpath.normpath(working_dir)
    dotenv = parse_dotenv(dotenv_text, environ, source=dotenv_path) if dotenv_text is not None else {}
    loader = _Loader(project_environment(environ, dotenv), working_dir, read_file)
    parsed = []
    for path, text in files:
        abspath = posixpath.normpath(posixpath.join(working_dir, path))
        loader.texts[abspath] = text
        parsed.append((path, abspath, parse_yaml(path, text)))
    name = _project_name(project_name, loader.env, parsed, working_dir)
    loader.env["COMPOSE_PROJECT_NAME"] = name
    merged: dict[str, Any] = {}
    for path, abspath, documents in parsed:
        for data, lines in documents:
            layer = loader.layer(path, abspath, data, lines)
            merged = _merge_layers(merged, layer)
    project = loader.project(merged, name, [p for p, _ in files], profiles)
    return project


# --- YAML ------------------------------------------------------------------------------------------

class _Resolver(yaml.resolver.BaseResolver):
    """YAML 1.2's core scalars, as docker compose (go-yaml v3) reads them: ``yes``/``on`` stay
    strings, ``22:22`` is not a base-60 number, ``0755`` is decimal."""


_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
               r"|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Resolver.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


class _YamlLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
                  yaml.constructor.SafeConstructor, _Resolver):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _Resolver.__init__(self)

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    if key_node.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"mapping key {key_node.value!r} already defined at line "
                            f"{seen[key_node.value]}", key_node.start_mark)
                    seen[key_node.value] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def _construct_int(loader: _YamlLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    try:
        return int(text, 0)
    except ValueError:
        return int(text, 10)  # "0755": decimal in YAML 1.2


def _construct_reset(loader: _YamlLoader, node: yaml.Node) -> Any:
    return nz.RESET


def _construct_override(loader: _YamlLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return nz.OverrideDict(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return nz.OverrideList(loader.construct_sequence(node, deep=True))
    return loader.construct_object(yaml.ScalarNode(loader.resolve(yaml.ScalarNode, node.value, (True, False)),
                                                   node.value, node.start_mark, node.end_mark))


_YamlLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_YamlLoader.add_constructor("!reset", _construct_reset)
_YamlLoader.add_constructor("!override", _construct_override)


def parse_yaml(path: str, text: str) -> list[tuple[dict[str, Any], dict[Path, int]]]:
    """Each YAML document of a compose file as ``(data, lines)``; ``lines`` maps a path inside the
    document to its line number.  Raises :class:`InvalidArgument` with the file and the line."""
    loader = _YamlLoader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            lines: dict[Path, int] = {}
            _index_lines(node, (), lines, set())
            if data is None:
                continue
            if not isinstance(data, dict):
                raise InvalidArgument(f"{path}: Top-level object must be a mapping")
            _check_keys(path, data, ())
            documents.append((data, lines))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise InvalidArgument(f"failed to parse {path}: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"failed to parse {path}: {exc}") from None
    finally:
        loader.dispose()
    if not documents:
        raise InvalidArgument(f"{path}: empty compose file")
    return documents


def _index_lines(node: yaml.Node, path: Path, lines: dict[Path, int], active: set[int]) -> None:
    if id(node) in active:  # a recursive alias
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                sub = (*path, key.value)
                lines.setdefault(sub, key.start_mark.line + 1)
                _index_lines(value, sub, lines, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault((*path, i), item.start_mark.line + 1)
            _index_lines(item, (*path, i), lines, active)
    active.discard(id(node))


def _check_keys(path: str, node: Any, where: Path) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if not isinstance(k, str):
                location = f"in {dotted(where)}" if where else "at top level"
                raise InvalidArgument(f"{path}: non-string key {location}: {k!r}")
            _check_keys(path, v, (*where, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_keys(path, v, (*where, i))


# --- schema validation -----------------------------------------------------------------------------

@functools.cache
def _validator() -> Any:
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - a packaging problem, not a user error
        raise InvalidArgument("validating compose files needs the jsonschema package") from exc
    schema = json.loads(resources.files("dockyard.compose").joinpath("compose-spec.json").read_text("utf-8"))
    return jsonschema.Draft7Validator(schema)


def validate(data: Mapping[str, Any], file: str, lines: Mapping[Path, int] | None = None) -> None:
    """Validate one (interpolated) document against the Compose Specification's JSON schema.

    Raises :class:`InvalidArgument` listing each problem on its own line, in docker compose's words:
    ``validating compose.yaml: services.web.ports.0 Invalid type. Expected: ..., given: boolean``."""
    errors = sorted(_validator().iter_errors(_without_resets(data)),
                    key=lambda e: [str(p) for p in e.absolute_path])
    messages: list[str] = []
    for err in errors:
        for path, line_path, text in _describe(err):
            line = _line(lines or {}, line_path)
            msg = f"validating {file}: {dotted(path) or '(root)'} {text}" + (f" (line {line})" if line else "")
            if msg not in messages:
                messages.append(msg)
    if messages:
        raise InvalidArgument("\n".join(messages[:10]))


def _line(lines: Mapping[Path, int], path: Path) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _without_resets(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_resets(v) for k, v in node.items() if v is not nz.RESET}
    if isinstance(node, list):
        return [_without_resets(v) for v in node if v is not nz.RESET]
    return node


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _describe(err: Any) -> list[tuple[Path, Path, str]]:
    """A jsonschema error -> ``(path, path for the line, message)`` in compose's (gojsonschema's) words."""
    path: Path = tuple(err.absolute_path)
    kind, expected, inst = err.validator, err.validator_value, err.instance
    if kind == "additionalProperties" and isinstance(inst, dict):
        props = err.schema.get("properties", {})
        patterns = err.schema.get("patternProperties", {})
        extras = [k for k in inst if k not in props and not any(re.search(p, k) for p in patterns)]
        return [(path, (*path, k), f"Additional property {k} is not allowed") for k in extras]
    if kind in ("oneOf", "anyOf"):
        best = _best_branch(err)
        if best is not None:
            return _describe(best)
        types = _branch_types(err)
        if types:
            return [(path, path, f"Invalid type. Expected: {' or '.join(types)}, given: {_json_type(inst)}")]
        return [(path, path, "Must validate one and only one schema (oneOf)")]
    if kind == "type":
        want = " or ".join(expected) if isinstance(expected, list) else expected
        return [(path, path, f"Invalid type. Expected: {want}, given: {_json_type(inst)}")]
    if kind == "enum":
        return [(path, path, f"must be one of the following: {', '.join(json.dumps(e) for e in expected)}")]
    if kind == "required":
        missing = [r for r in expected if isinstance(inst, dict) and r not in inst] or list(expected)
        return [(path, path, f"{missing[0]} is required")]
    if kind == "pattern":
        return [(path, path, f"Does not match pattern '{expected}'")]
    if kind == "uniqueItems" and isinstance(inst, list):
        frozen = [json.dumps(v, sort_keys=True) for v in inst]
        for j, v in enumerate(frozen):
            if v in frozen[:j]:
                return [(path, (*path, j), f"array items[{frozen.index(v)},{j}] must be unique")]
    if kind == "minimum":
        return [(path, path, f"Must be greater than or equal to {expected}")]
    if kind == "maximum":
        return [(path, path, f"Must be less than or equal to {expected}")]
    return [(path, path, err.message)]


def _mismatched(branch_errors: list[Any], depth: int) -> bool:
    return any(e.validator == "type" and len(e.absolute_path) == depth for e in branch_errors)


def _best_branch(err: Any) -> Any:
    """The error to report for a failed oneOf: from a branch whose type fits the value, the deepest."""
    branches: dict[Any, list[Any]] = {}
    for sub in err.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    depth = len(err.absolute_path)
    fitting = [e for errs in branches.values() if not _mismatched(errs, depth) for e in errs]
    if not fitting:
        return None
    return max(fitting, key=lambda e: len(e.absolute_path))


def _branch_types(err: Any) -> list[str]:
    out: list[str] = []
    depth = len(err.absolute_path)
    for sub in err.context:
        if sub.validator == "type" and len(sub.absolute_path) == depth:
            for t in sub.validator_value if isinstance(sub.validator_value, list) else [sub.validator_value]:
                if t not in out:
                    out.append(t)
    return out


# --- interpolation type casts ----------------------------------------------------------------------

# values the schema types strictly (no string alternative): an interpolated string is cast back,
# as compose-go's interpolation type-cast table does ("*" = any key, "#" = any index)
_CASTS: Final[list[tuple[tuple[str, ...], Callable[[str], Any]]]] = [
    (("services", "*", "depends_on", "*", "required"), parse_bool),
    (("services", "*", "use_api_socket"), parse_bool),
    (("services", "*", "develop", "watch", "#", "initial_sync"), parse_bool),
    (("services", "*", "networks", "*", "priority"), float),
    (("services", "*", "networks", "*", "gw_priority"), float),
]


def _convert(path: Path, value: str) -> Any:
    for pattern, cast in _CASTS:
        if len(pattern) == len(path) and all(
                p == "*" and isinstance(x, str) or p == "#" and isinstance(x, int) or p == x
                for p, x in zip(pattern, path)):
            try:
                return cast(value)
            except ValueError:
                return value  # the schema reports it
    return value


# --- project name ----------------------------------------------------------------------------------

def normalize_project_name(name: str) -> str:
    """Compose's normalisation for names it guesses (the ``name:`` key, the directory): lowercase,
    only ``[a-z0-9_-]``, no leading ``_``/``-``."""
    kept = "".join(c for c in name.lower() if c in "abcdefghijklmnopqrstuvwxyz0123456789_-")
    return kept.lstrip("_-")


def _project_name(explicit: str | None, env: Mapping[str, str],
                  parsed: list[tuple[str, str, list[tuple[dict[str, Any], dict[Path, int]]]]],
                  working_dir: str) -> str:
    for given in (explicit, env.get("COMPOSE_PROJECT_NAME")):
        if given:
            if _PROJECT_NAME.fullmatch(given) is None:
                raise InvalidArgument(
                    f"invalid project name {given!r}: must consist only of lowercase alphanumeric "
                    "characters, hyphens, and underscores as well as start with a letter or number")
            return given
    name = ""
    for path, _, documents in parsed:
        for data, _ in documents:
            raw = data.get("name")
            if isinstance(raw, str) and raw:
                try:
                    name = substitute(raw, env)
                except InvalidArgument as exc:
                    raise InvalidArgument(f"{path}: error while interpolating name: {exc}") from None
    name = normalize_project_name(name or posixpath.basename(working_dir))
    if not name:
        raise InvalidArgument("project name must not be empty")
    return name


# --- the loader ------------------------------------------------------------------------------------

@dataclass
class _Loader:
    env: dict[str, str]
    working_dir: str
    read_file: ReadFile | None
    texts: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _extends_files: dict[str, tuple[dict[str, Any], nz.FileContext]] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def missing(self, name: str) -> None:
        self.warn(f'The "{name}" variable is not set. Defaulting to a blank string.')

    def read(self, path: str, what: str) -> str:
        if path in self.texts:
            return self.texts[path]
        if self.read_file is None:
            raise InvalidArgument(f"{what} {path}: no way to read files was given")
        try:
            text = self.read_file(path)
        except (OSError, NotFound) as exc:
            raise NotFound(f"{what} {path} not found: {exc}") from None
        self.texts[path] = text
        return text

    def prepare(self, path: str, data: dict[str, Any], lines: dict[Path, int]) -> dict[str, Any]:
        """Interpolate, then validate, one document."""
        data = interpolate_tree(data, self.env, on_missing=self.missing, convert=_convert, where=path)
        validate(data, path, lines)
        return data

    def layer(self, path: str, abspath: str, data: dict[str, Any], lines: dict[Path, int]) -> dict[str, Any]:
        """One document of a ``-f`` file -> its canonical (normalised, extends resolved) form."""
        data = self.prepare(path, data, lines)
        ctx = nz.FileContext(file=path, base_dir=self.working_dir, home=self.env.get("HOME"), lines=lines)
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "version":
                self.warn(f"{path}: the attribute `version` is obsolete, it will be ignored, please remove it "
                          "to avoid potential confusion")
            elif key == "include":
                raise InvalidArgument(f"{path}: include is not supported yet; list the files with -f instead")
            elif key == "name" or key.startswith("x-"):
                out[key] = value
            elif key == "services":
                out[key] = nz.RESET if value is nz.RESET else {
                    n: self.service(n, value, ctx, abspath, ()) for n in value}
            elif key in ("networks", "volumes", "secrets", "configs"):
                out[key] = nz.RESET if value is nz.RESET else {
                    n: nz.normalise_resource(key, n, v, ctx) for n, v in (value or {}).items()}
            else:
                self.warn(f"{path}: top-level `{key}` is not supported and was ignored")
        return out

    def service(self, name: str, services: Mapping[str, Any], ctx: nz.FileContext, file_key: str,
                stack: tuple[tuple[str, str], ...]) -> Any:
        raw = services[name]
        if raw is nz.RESET:
            return nz.RESET
        raw = raw or {}
        own = nz.normalise_service(name, raw, ctx)
        ext = raw.get("extends")
        if ext is None:
            return own
        if isinstance(ext, str):
            ext = {"service": ext}
        ref = (file_key, name)
        if ref in stack:
            chain = [*stack, ref]
            text = [f"  {chain[0][1]} in {chain[0][0]}"] + [f"  extends {s} in {f}" for f, s in chain[1:]]
            raise InvalidArgument("Circular reference:\n" + "\n".join(text))
        base_name = ext["service"]
        base_services: Mapping[str, Any]
        if ext.get("file"):
            base_key = ctx.abspath(ext["file"])
            base_services, base_ctx = self.extends_file(base_key, ctx, ("services", name, "extends", "file"))
        else:
            base_key, base_services, base_ctx = file_key, services, ctx
        if base_name not in base_services:
            raise InvalidArgument(f'cannot extend service "{name}" in {ctx.file}: service "{base_name}" not '
                                  f"found in {base_ctx.file}")
        base = self.service(base_name, base_services, base_ctx, base_key, (*stack, ref))
        return nz.merge_services({} if base is nz.RESET else nz.finish(base), own)

    def extends_file(self, abspath: str, ctx: nz.FileContext, path: Path) -> tuple[dict[str, Any], nz.FileContext]:
        if abspath not in self._extends_files:
            try:
                text = self.read(abspath, "extends file")
            except NotFound as exc:
                raise ctx.fail(path, str(exc)) from None
            data, lines = parse_yaml(abspath, text)[0]
            data = self.prepare(abspath, data, lines)
            other = nz.FileContext(file=abspath, base_dir=posixpath.dirname(abspath), home=ctx.home, lines=lines)
            services = data.get("services") or {}
            self._extends_files[abspath] = (services if isinstance(services, dict) else {}, other)
        return self._extends_files[abspath]

    # --- the model ---------------------------------------------------------------------------------

    def project(self, merged: dict[str, Any], name: str, files: list[str], profiles: Sequence[str]) -> Project:
        active = list(profiles) or [p.strip() for p in self.env.get("COMPOSE_PROFILES", "").split(",") if p.strip()]
        canonical = {n: nz.finish(c) for n, c in (merged.get("services") or {}).items() if c is not nz.RESET}
        enabled = {n for n, c in canonical.items() if _has_profile(c.get("profiles") or [], active)}
        project = Project(name=name, working_dir=self.working_dir, environment=dict(self.env), files=files,
                          profiles=active, warnings=self.warnings,
                          extensions={k: v for k, v in merged.items() if k.startswith("x-")})
        for key, c in sorted(canonical.items()):
            service = self.build_service(key, c, resolve_env=key in enabled)
            (project.services if key in enabled else project.disabled_services)[key] = service
        project.networks = {k: _network(k, c or {}, name) for k, c in _resources(merged, "networks").items()}
        project.volumes = {k: _volume(k, c or {}, name) for k, c in _resources(merged, "volumes").items()}
        project.secrets = {k: _file_object("secret", k, c or {}, name) for k, c in _resources(merged, "secrets").items()}
        project.configs = {k: _file_object("config", k, c or {}, name) for k, c in _resources(merged, "configs").items()}
        if "default" not in project.networks and any("default" in s.networks for s in project.services.values()):
            project.networks["default"] = Network(name=f"{name}_default")
        _check(project)
        return project

    def build_service(self, name: str, c: dict[str, Any], *, resolve_env: bool) -> Service:
        s = Service(name=name)
        simple = {f.name for f in fields(Service)} - {
            "name", "build", "environment", "env_file", "ports", "volumes", "networks", "depends_on",
            "healthcheck", "deploy", "ulimits", "extra_hosts", "logging", "secrets", "configs", "watch",
            "extensions", "extras"}
        for key, value in c.items():
            if key in simple:
                setattr(s, key, value)
            elif key.startswith("x-"):
                s.extensions[key] = value
            elif key not in ("build", "environment", "env_file", "ports", "volumes", "networks", "depends_on",
                             "healthcheck", "deploy", "ulimits", "extra_hosts", "logging", "secrets",
                             "configs", "develop"):
                s.extras[key] = value
        where = f"services.{name}"
        if "build" in c:
            s.build = _build(c["build"], self.working_dir, self.env)
        s.env_file = [EnvFile(**e) for e in c.get("env_file", [])]
        if resolve_env:
            s.environment = self.environment(s.env_file, c.get("environment", {}))
        else:
            s.environment = dict(c.get("environment", {}))
        s.ports = list(c.get("ports", []))
        s.volumes = list(c.get("volumes", []))
        networks = c.get("networks") or {}
        if s.network_mode and networks:
            raise InvalidArgument(f"service {name} declares mutually exclusive `network_mode` and `networks`: "
                                  "invalid compose project")
        if not networks and not s.network_mode:
            networks = {"default": {}}
        s.networks = {n: _known(ServiceNetwork, cfg) for n, cfg in networks.items()}
        s.depends_on = {n: _known(Dependency, d) for n, d in (c.get("depends_on") or {}).items()}
        for dep, restart in _implicit_dependencies(s):
            s.depends_on.setdefault(dep, Dependency(restart=restart))
        if "healthcheck" in c:
            s.healthcheck = _healthcheck(c["healthcheck"], where)
        if "deploy" in c:
            s.deploy = _deploy(c["deploy"])
        if s.scale is not None and s.deploy is not None and s.deploy.replicas is not None \
                and s.scale != s.deploy.replicas:
            raise InvalidArgument(f"{where}: can't set distinct values on 'scale' and 'deploy.replicas'")
        if s.container_name and s.replicas > 1:
            raise InvalidArgument(f"{where}: can't set container_name and {name} as container name must be "
                                  "unique: invalid compose project")
        if s.restart is not None and _RESTART.fullmatch(s.restart) is None:
            raise InvalidArgument(f"{where}.restart: invalid restart policy {s.restart!r} (no, always, "
                                  "on-failure[:max-retries], unless-stopped)")
        s.ulimits = {k: Ulimit(**v) for k, v in (c.get("ulimits") or {}).items()}
        s.extra_hosts = [f"{h}:{ip}" for h, ips in (c.get("extra_hosts") or {}).items() for ip in ips]
        if "logging" in c:
            s.logging = Logging(driver=c["logging"].get("driver"), options=dict(c["logging"].get("options", {})))
        s.secrets = [_file_ref(r) for r in c.get("secrets", [])]
        s.configs = [_file_ref(r) for r in c.get("configs", [])]
        s.watch = [_watch_rule(r) for r in (c.get("develop") or {}).get("watch", [])]
        return s

    def environment(self, env_files: list[EnvFile], own: Mapping[str, str | None]) -> dict[str, str | None]:
        """env_file values in order, then ``environment`` over them; a variable listed without a
        value takes the project environment's value (``None`` when it has none)."""
        out: dict[str, str | None] = {}
        for ef in env_files:
            try:
                text = self.read(ef.path, "env file")
            except NotFound:
                if ef.required:
                    raise
                continue
            if ef.format == "raw":
                out.update(_raw_env(text))
            else:
                out.update(parse_dotenv(text, self.env, source=ef.path, on_missing=self.missing))
        for key, value in own.items():
            out[key] = value if value is not None else self.env.get(key)
        return out


def _merge_layers(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if key in ("services", "networks", "volumes", "secrets", "configs"):
            if value is nz.RESET:
                out.pop(key, None)
                continue
            section = dict(out.get(key) or {})
            for name, item in value.items():
                if item is nz.RESET:
                    section.pop(name, None)
                elif name in section and section[name] is not nz.RESET:
                    merged = nz.merge_services(section[name] or {}, item or {})
                    section[name] = merged
                else:
                    section[name] = item
            out[key] = section
        else:
            out[key] = value
    return out


def _resources(merged: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {k: nz.finish(v or {}) for k, v in (merged.get(kind) or {}).items() if v is not nz.RESET}


def _has_profile(service_profiles: list[str], active: list[str]) -> bool:
    return not service_profiles or "*" in active or any(p in active for p in service_profiles)


def _known(cls: type, values: Mapping[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def _build(b: Mapping[str, Any], working_dir: str, env: Mapping[str, str]) -> BuildConfig:
    config = _known(BuildConfig, {**b, "context": b.get("context") or working_dir})
    if not b.get("dockerfile") and b.get("dockerfile_inline"):
        config.dockerfile = ""
    config.args = {k: v if v is not None else env.get(k) for k, v in config.args.items()}
    config.extra_hosts = [f"{h}:{ip}" for h, ips in (b.get("extra_hosts") or {}).items() for ip in ips]
    config.shm_size = b.get("shm_size")
    return config


def _healthcheck(h: Mapping[str, Any], where: str) -> Healthcheck:
    hc = _known(Healthcheck, h)
    if hc.disable:
        if hc.test and hc.test != ["NONE"]:
            raise InvalidArgument(f"{where}.healthcheck: test and disable can't be set at the same time")
        hc.test = ["NONE"]
    elif hc.test == ["NONE"]:
        hc.disable = True
    return hc


def _deploy(d: Mapping[str, Any]) -> DeployConfig:
    deploy = DeployConfig(mode=d.get("mode"), replicas=d.get("replicas"), labels=dict(d.get("labels") or {}))
    resources_ = d.get("resources") or {}
    if resources_.get("limits") is not None:
        deploy.limits = _known(ResourceSpec, resources_["limits"])
    if resources_.get("reservations") is not None:
        deploy.reservations = _known(ResourceSpec, resources_["reservations"])
    if d.get("restart_policy") is not None:
        deploy.restart_policy = _known(RestartPolicy, d["restart_policy"])
    return deploy


def _file_ref(r: Mapping[str, Any]) -> FileReference:
    return FileReference(source=r["source"], target=r.get("target"),
                         uid=None if r.get("uid") is None else str(r["uid"]),
                         gid=None if r.get("gid") is None else str(r["gid"]), mode=r.get("mode"))


def _watch_rule(r: Mapping[str, Any]) -> WatchRule:
    return WatchRule(path=r["path"], action=r["action"], target=r.get("target"), ignore=list(r.get("ignore", [])),
                     include=list(r.get("include", [])), initial_sync=bool(r.get("initial_sync", False)))


def _raw_env(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v
    return out


def _implicit_dependencies(s: Service) -> list[tuple[str, bool]]:
    """Services a service needs without saying so in depends_on, and whether a restart of the
    dependency restarts it (compose-go's normalisation: yes for links and shared namespaces)."""
    deps = [(ref[len("service:"):], True) for ref in (s.network_mode, s.ipc, s.pid, s.uts, s.cgroup)
            if ref and ref.startswith("service:")]
    deps += [(v.split(":")[0], False) for v in s.volumes_from if not v.startswith("container:")]
    deps += [(link.split(":")[0], True) for link in s.links]
    return deps


def _resource_name(key: str, c: Mapping[str, Any], project: str) -> str:
    return str(c.get("name") or (key if c.get("external") else f"{project}_{key}"))


def _network(key: str, c: Mapping[str, Any], project: str) -> Network:
    net = _known(Network, {**c, "name": _resource_name(key, c, project)})
    if "ipam" in c:
        ipam = c["ipam"] or {}
        net.ipam = Ipam(driver=ipam.get("driver"), options=dict(ipam.get("options") or {}),
                        config=[_known(IpamPool, p) for p in ipam.get("config") or []])
    return net


def _volume(key: str, c: Mapping[str, Any], project: str) -> Volume:
    return _known(Volume, {**c, "name": _resource_name(key, c, project)})  # type: ignore[no-any-return]


def _file_object(kind: str, key: str, c: Mapping[str, Any], project: str) -> FileObject:
    obj = _known(FileObject, {**c, "name": _resource_name(key, c, project)})
    sources = [s for s in ("file", "environment", "content") if c.get(s)] + (["external"] if obj.external else [])
    if len(sources) != 1:
        allowed = "`external`, `file` or `environment`" + (" or `content`" if kind == "config" else "")
        raise InvalidArgument(f"{kind} {key!r} must declare exactly one of {allowed}")
    return obj  # type: ignore[no-any-return]


def _check(project: Project) -> None:
    """compose-go's consistency checks, on the enabled services."""
    for s in project.services.values():
        if not s.image and s.build is None:
            raise InvalidArgument(f'service "{s.name}" has neither an image nor a build context specified: '
                                  "invalid compose project")
        for dep, d in list(s.depends_on.items()):
            if dep in project.services:
                continue
            if dep in project.disabled_services and not d.required:
                del s.depends_on[dep]
                project.warnings.append(f'service "{s.name}": optional dependency "{dep}" is not enabled, ignored')
            elif dep in project.disabled_services:
                raise InvalidArgument(
                    f'Service "{dep}" was pulled in as dependency of service "{s.name}" but is not enabled by '
                    f'the active profiles. You may fix this by adding a common profile to "{dep}" and "{s.name}".')
            else:
                raise InvalidArgument(f'service "{s.name}" depends on undefined service "{dep}": '
                                      "invalid compose project")
        for net in s.networks:
            if net not in project.networks:
                raise InvalidArgument(f'service "{s.name}" refers to undefined network {net}: invalid compose project')
        for m in s.volumes:
            if m.type == "volume" and m.source and m.source not in project.volumes:
                raise InvalidArgument(f'service "{s.name}" refers to undefined volume {m.source}: '
                                      "invalid compose project")
        for kind, refs, defined in (("secret", s.secrets, project.secrets), ("config", s.configs, project.configs)):
            for ref in refs:
                if ref.source not in defined:
                    raise InvalidArgument(f'service "{s.name}" refers to undefined {kind} {ref.source}: '
                                          "invalid compose project")
    _check_cycles(project)


def _check_cycles(project: Project) -> None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise InvalidArgument(f"dependency cycle detected: {' -> '.join(cycle)}")
        state[name] = 1
        for dep in sorted(project.services[name].depends_on):
            visit(dep, [*path, name])
        state[name] = 2

    for name in sorted(project.services):
        visit(name, [])
