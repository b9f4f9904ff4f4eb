"""A Dockerfile as a build plan: stages, instructions, meta ARGs and the stages --target needs.

The text is parsed by the BuildKit parser itself (the PyPI ``dockerfile`` package wraps
``moby/buildkit/frontend/dockerfile/parser``), so line continuations, JSON (exec) form, heredocs
and the ``# escape=`` directive are Docker's; this module adds what BuildKit's ``instructions``
package and ``dockerfile2llb`` do on top, with their error messages::

    # syntax=docker/dockerfile:1        <- parser directives (escape, syntax), first lines only
    ARG BASE=python:3.11-slim           <- meta ARG: global scope, usable in FROM only
    FROM ${BASE} AS build               <- stage 0 "build"; base expanded with the meta ARGs
    ARG BASE                            <- re-imports the meta value into the stage
    RUN pip wheel -w /w .               <- kept as written: the executor expands at build time
    FROM python:3.11-slim               <- stage 1, the default target (the last stage)
    COPY --from=build /w /w             <- dependency on stage 0 (by name or index)

What the plan does:

- checks every instruction as BuildKit does, in every stage (a typo in a stage the target does
  not need still fails the build): unknown instructions, flags each instruction accepts, argument
  counts, HEALTHCHECK options, SHELL's JSON form, ONBUILD triggers;
- resolves the meta ARGs (``--build-arg`` wins, else the default expanded with the earlier meta
  ARGs and the predefined platform ARGs) and expands FROM's image and ``--platform`` with them;
- links stages: ``FROM <earlier stage name>``, ``COPY --from=<name|index>`` and ``RUN
  --mount=...,from=<name|index>`` (not expanded, as in BuildKit); anything else is an image;
- lists the stages the target needs, dependencies first; the executor builds only those.

What it deliberately does not do: expand instruction values other than FROM.  ENV and ARG change
the environment while a stage runs, so the executor expands each instruction with the stage's
environment at that point, using :func:`expand_instruction` and :func:`resolve_arg` below.
:func:`expands_variables` is Docker's list of instructions the *builder* expands: ADD COPY ENV
EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR, plus ARG defaults (BuildKit expands those too);
RUN, CMD, ENTRYPOINT, HEALTHCHECK and SHELL are not (the container's shell expands them), nor
ONBUILD (its trigger is expanded in the child build).

Errors are InvalidArgument with Docker's words, prefixed with the line:
``dockerfile parse error on line 3: unknown instruction: FOO``.

Pure: the parser is an in-process Go library; no os, no files (``-f`` reading is context.py's).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import dockerfile

from dockyard.build.expand import DEFAULT_ESCAPE, expand, expand_words
from dockyard.errors import InvalidArgument

__all__ = [
    "DEFAULT_PLATFORM",
    "EXPANDED_FLAGS",
    "EXPANDING_INSTRUCTIONS",
    "INSTRUCTIONS",
    "PLATFORM_ARGS",
    "PROXY_ARGS",
    "BuildPlan",
    "HealthConfig",
    "Heredoc",
    "Instruction",
    "Stage",
    "expand_instruction",
    "expands_variables",
    "make_plan",
    "parse_directives",
    "parse_go_duration",
    "parse_healthcheck",
    "parse_onbuild_triggers",
    "platform_args",
    "proxy_args",
    "resolve_arg",
]

INSTRUCTIONS = frozenset(
    {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
        "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
    }
)  # fmt: skip

# The builder substitutes variables in these (Docker's "Environment replacement" list; ARG
# defaults are expanded by BuildKit as well).  ONBUILD is absent on purpose.
EXPANDING_INSTRUCTIONS = frozenset(
    {"ADD", "ARG", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)

# Flags whose values are expanded too.  COPY --from and a mount's from= are *not* (BuildKit
# keeps stage references literal so the dependency graph is known before anything runs).
EXPANDED_FLAGS: Mapping[str, tuple[str, ...]] = {
    "ADD": ("chown", "chmod", "checksum"),
    "COPY": ("chown", "chmod"),
    "RUN": ("mount",),
}

# Usable in RUN without an ARG line when given with --build-arg, and left out of the history.
PROXY_ARGS = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
)  # fmt: skip

# Predefined in the global scope: usable in FROM directly; a stage sees one after ``ARG NAME``.
PLATFORM_ARGS = (
    "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
    "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
)  # fmt: skip

DEFAULT_PLATFORM = "linux/amd64"

_STR, _BOOL, _LIST = "string", "bool", "strings"
_FLAG_SPECS: Mapping[str, Mapping[str, str]] = {
    "FROM": {"platform": _STR},
    "RUN": {"mount": _LIST, "network": _STR, "security": _STR},
    "COPY": {
        "from": _STR, "chown": _STR, "chmod": _STR, "link": _BOOL, "parents": _BOOL, "exclude": _LIST,
    },
    "ADD": {
        "chown": _STR, "chmod": _STR, "link": _BOOL, "keep-git-dir": _BOOL, "checksum": _STR,
        "exclude": _LIST, "unpack": _BOOL,
    },
    "HEALTHCHECK": {
        "interval": _STR, "timeout": _STR, "start-period": _STR, "start-interval": _STR, "retries": _STR,
    },
}  # fmt: skip

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
# The directives the bundled parser honours; an unknown one ends the directive block, as in
# BuildKit, so recognising more here would disagree with the parser about the escape character.
_KNOWN_DIRECTIVES = ("escape", "syntax")
_HEREDOC_MARKER = re.compile(r"^(\d*)<<(-?)(.+)$")
_ONBUILD_PREFIX = re.compile(r"(?i)^\s*ONBUILD\s*")
_LEADING_TABS = re.compile(r"(?m)^\t+")
_INDEX = re.compile(r"^[+-]?\d+$")
_BOM = "\ufeff"


# -- the model ------------------------------------------------------------------------------


@dataclass
class Heredoc:
    """A here-document attached to RUN, COPY or ADD (``<<EOF``).

    ``content`` is the body, with leading tabs already removed for ``<<-EOF`` (``chomp``).
    ``expand`` is False when the marker was quoted (``<<"EOF"``): for COPY/ADD the executor then
    writes the body verbatim; RUN bodies go to the shell, which does its own expansion.
    """

    name: str
    content: str
    file_descriptor: int = 0
    expand: bool = True
    chomp: bool = False


@dataclass
class Instruction:
    """One instruction as written (kind upper-cased, flags parsed, nothing expanded).

    ``value`` is the parser's argument list:

    - RUN/CMD/ENTRYPOINT/SHELL: the exec-form list when ``json``, else ``[command line]``;
    - ENV/LABEL: ``[key1, value1, key2, value2, ...]`` (quotes still in; :meth:`pairs`);
    - ARG: ``["NAME", "NAME=default", ...]`` (:meth:`args`);
    - COPY/ADD: sources then destination (``<<EOF`` words stand for :attr:`heredocs`);
    - HEALTHCHECK: ``["CMD", ...]`` or ``["NONE"]`` (:func:`parse_healthcheck`);
    - ONBUILD: the trigger's own arguments; :attr:`sub_kind` is the trigger's instruction and
      :attr:`trigger` the text Docker stores in the image config's ``OnBuild`` list;
    - the rest: their words (EXPOSE, VOLUME) or their single value (USER, WORKDIR, ...).

    ``flags`` maps a flag name to its values in order; a boolean flag given bare is ``"true"``.
    ``line`` / ``end_line`` are 1-based lines in the Dockerfile, for messages.
    """

    kind: str
    value: list[str]
    flags: dict[str, list[str]]
    json: bool
    original: str
    line: int
    heredocs: list[Heredoc] = field(default_factory=list)
    end_line: int = 0
    sub_kind: str = ""
    trigger: str = ""

    def flag(self, name: str, default: str = "") -> str:
        """The flag's value (the last one if repeated), or ``default`` if it was not given."""
        values = self.flags.get(name)
        return values[-1] if values else default

    def flag_values(self, name: str) -> list[str]:
        return list(self.flags.get(name, ()))

    def has_flag(self, name: str) -> bool:
        return name in self.flags

    def flag_true(self, name: str) -> bool:
        """For boolean flags (``--link``, ``--parents``): given and not ``=false``."""
        return self.flag(name, "false") == "true"

    def pairs(self) -> list[tuple[str, str]]:
        """ENV / LABEL key-value pairs, unexpanded (quotes are removed by expansion)."""
        return [(self.value[i], self.value[i + 1]) for i in range(0, len(self.value) - 1, 2)]

    def args(self) -> list[tuple[str, str | None]]:
        """ARG declarations as (name, raw default or None)."""
        out: list[tuple[str, str | None]] = []
        for item in self.value:
            name, sep, default = item.partition("=")
            out.append((name, default if sep else None))
        return out

    @property
    def expands_variables(self) -> bool:
        return expands_variables(self.kind)


@dataclass
class Stage:
    """One build stage: a FROM and the instructions up to the next FROM.

    ``base`` is the image after meta-ARG expansion (``scratch`` possible) or, when
    ``base_stage`` is set, the name of the earlier stage it builds on.  ``depends_on`` lists
    every stage this one needs (base stage, ``COPY --from``, ``RUN --mount=from=``), sorted.
    """

    index: int
    name: str
    base: str
    platform: str
    instructions: list[Instruction]
    base_stage: int | None = None
    depends_on: list[int] = field(default_factory=list)
    from_instruction: Instruction | None = None

    @property
    def display_name(self) -> str:
        """The name BuildKit shows for the stage: its AS name, else its index."""
        return self.name or str(self.index)


@dataclass
class BuildPlan:
    """The whole Dockerfile, resolved as far as it can be without running anything.

    ``meta_args``: the ARGs before the first FROM with their values (``None``: declared, no value).
    ``global_args``: the global scope — platform ARGs overlaid with the meta ARGs; what FROM was
    expanded with and what ``ARG NAME`` (no default) in a stage re-imports (:func:`resolve_arg`).
    ``needed``: indexes of the stages to build, dependencies first, the target last.
    """

    stages: list[Stage]
    meta_args: dict[str, str | None]
    escape: str
    syntax: str
    target: Stage
    needed: list[int]
    global_args: dict[str, str | None] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)

    @property
    def needed_stages(self) -> list[Stage]:
        return [self.stages[i] for i in self.needed]

    def stage(self, ref: str) -> Stage | None:
        """The stage a ``COPY --from`` / mount ``from=`` value names, or None for an image.

        A number is a stage index (InvalidArgument if out of range); a name matches an AS
        name case-insensitively.
        """
        index = _stage_ref(ref, self.stages)
        return None if index is None else self.stages[index]

    def unused_build_args(self) -> list[str]:
        """--build-arg names no ARG in the built stages (or before FROM) consumes: Docker's
        "[Warning] One or more build-args [...] were not consumed"."""
        declared = set(self.meta_args) | set(PROXY_ARGS) | set(PLATFORM_ARGS)
        for stage in self.needed_stages:
            for instruction in stage.instructions:
                if instruction.kind == "ARG":
                    declared.update(name for name, _ in instruction.args())
        return sorted(name for name in self.build_args if name not in declared)


@dataclass(frozen=True)
class HealthConfig:
    """HEALTHCHECK as the image config stores it (durations in nanoseconds; 0 = default)."""

    test: list[str]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


# -- small public helpers -------------------------------------------------------------------


def expands_variables(kind: str) -> bool:
    """Whether the builder substitutes variables in this instruction's value (not ONBUILD)."""
    return kind.upper() in EXPANDING_INSTRUCTIONS


def platform_args(
    target_platform: str = DEFAULT_PLATFORM, build_platform: str = DEFAULT_PLATFORM
) -> dict[str, str]:
    """The predefined platform ARGs: ``TARGETPLATFORM=linux/amd64``, ``TARGETOS=linux``, ..."""
    out: dict[str, str] = {}
    for prefix, platform in (("TARGET", target_platform), ("BUILD", build_platform)):
        os_name, _, rest = platform.partition("/")
        arch, _, variant = rest.partition("/")
        out[prefix + "PLATFORM"] = platform
        out[prefix + "OS"] = os_name
        out[prefix + "ARCH"] = arch
        out[prefix + "VARIANT"] = variant
    return out


def proxy_args(build_args: Mapping[str, str]) -> dict[str, str]:
    """The proxy ARGs among ``build_args``: RUN gets them as environment even without ARG."""
    return {name: build_args[name] for name in PROXY_ARGS if name in build_args}


def resolve_arg(
    name: str,
    default: str | None,
    *,
    build_args: Mapping[str, str],
    global_args: Mapping[str, str | None],
    env: Mapping[str, str],
    escape: str = DEFAULT_ESCAPE,
) -> str | None:
    """The value an ``ARG name[=default]`` inside a stage takes (BuildKit's dispatchArg).

    ``--build-arg`` wins; else a default is expanded with ``env`` (the stage's ENV and ARG
    values so far); else a bare ``ARG NAME`` re-imports the global value (a meta ARG or a
    platform ARG).  None means declared but unset: the name is not put in the environment.
    The executor must still let a later or earlier ``ENV`` of the same name take precedence
    over the ARG when expanding and running, as Docker does.
    """
    if name in build_args:
        return build_args[name]
    if default is None:
        return global_args.get(name)
    return expand(default, env, escape=escape)


def parse_go_duration(text: str) -> int:
    """A Go ``time.ParseDuration`` string ("1m30s", "1.5h", "300ms") in nanoseconds."""
    units = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6, "s": 10**9,
             "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip
    quoted = '"' + text + '"'
    rest = text
    negative = False
    if rest[:1] in ("+", "-"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise InvalidArgument(f"time: invalid duration {quoted}")
    total = 0
    while rest:
        number = re.match(r"(\d*)(?:\.(\d*))?", rest)
        assert number is not None
        whole, fraction = number.group(1), number.group(2)
        if not whole and not fraction:
            raise InvalidArgument(f"time: invalid duration {quoted}")
        rest = rest[number.end() :]
        unit_match = re.match(r"[^\d.]*", rest)
        unit = unit_match.group(0) if unit_match else ""
        rest = rest[len(unit) :]
        if not unit:
            raise InvalidArgument(f"time: missing unit in duration {quoted}")
        if unit not in units:
            raise InvalidArgument(f'time: unknown unit "{unit}" in duration {quoted}')
        scale = units[unit]
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
    return -total if negative else total


def parse_healthcheck(instruction: Instruction) -> HealthConfig:
    """HEALTHCHECK's config, checked as BuildKit does (``HEALTHCHECK NONE`` -> test ["NONE"]).

    Shell form becomes ``["CMD-SHELL", "<line>"]``, exec form ``["CMD", ...]``.  Intervals must
    be 0 or at least 1ms; retries a non-negative integer.
    """
    if not instruction.value:
        raise InvalidArgument("HEALTHCHECK requires at least one argument")
    kind = instruction.value[0].upper()
    args = list(instruction.value[1:])
    if kind == "NONE":
        if args:
            raise InvalidArgument("HEALTHCHECK NONE takes no arguments")
        return HealthConfig(test=["NONE"])
    if kind != "CMD":
        raise InvalidArgument(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    if not args or (not instruction.json and not "".join(args).strip()):
        raise InvalidArgument("Missing command after HEALTHCHECK CMD")
    test = ["CMD", *args] if instruction.json else ["CMD-SHELL", " ".join(args)]

    def interval(name: str) -> int:
        text = instruction.flag(name)
        if not text:
            return 0
        value = parse_go_duration(text)
        if value == 0:
            return 0
        if value < 10**6:
            raise InvalidArgument(f'Interval "{name}" cannot be less than 1ms')
        return value

    retries = 0
    if text := instruction.flag("retries"):
        if not re.fullmatch(r"[+-]?\d+", text):
            raise InvalidArgument(f'strconv.ParseInt: parsing "{text}": invalid syntax')
        retries = int(text)
        if retries < 0:
            raise InvalidArgument(f"--retries cannot be negative ({retries})")
    return HealthConfig(
        test=test,
        interval=interval("interval"),
        timeout=interval("timeout"),
        start_period=interval("start-period"),
        start_interval=interval("start-interval"),
        retries=retries,
    )


def expand_instruction(
    instruction: Instruction, env: Mapping[str, str], *, escape: str = DEFAULT_ESCAPE
) -> Instruction:
    """A copy of ``instruction`` with its variables substituted as Docker's builder does.

    ``env`` is the stage's environment at this instruction (ENV values over ARG values).
    ENV/LABEL: each key and value, quotes removed.  ARG: names and defaults (but use
    :func:`resolve_arg` for the value an ARG takes).  EXPOSE: each word, re-split (``$PORTS``
    may hold several).  VOLUME, COPY/ADD paths: each word.  USER/WORKDIR/STOPSIGNAL: the value.
    COPY/ADD ``--chown/--chmod`` (ADD ``--checksum``) and RUN ``--mount`` fields other than
    ``from``; COPY/ADD heredoc bodies unless their marker was quoted.  Other instructions,
    including FROM (the plan expanded it) and ONBUILD, come back unchanged.
    """
    kind = instruction.kind
    if kind == "FROM" or (not expands_variables(kind) and kind not in EXPANDED_FLAGS):
        return instruction

    def one(word: str) -> str:
        return expand(word, env, escape=escape)

    value = list(instruction.value)
    if kind in ("ENV", "LABEL"):
        value = [one(word) for word in value]
    elif kind == "ARG":
        value = []
        for name, default in instruction.args():
            value.append(one(name) if default is None else f"{one(name)}={one(default)}")
    elif kind == "EXPOSE":
        value = [port for word in value for port in expand_words(word, env, escape=escape)]
    elif kind in ("VOLUME", "USER", "WORKDIR", "STOPSIGNAL"):
        value = [one(word) for word in value]
    elif kind in ("COPY", "ADD"):
        value = [word if _HEREDOC_MARKER.match(word) else one(word) for word in value]

    flags = {name: list(values) for name, values in instruction.flags.items()}
    for name in EXPANDED_FLAGS.get(kind, ()):
        if name not in flags:
            continue
        if name == "mount":
            flags[name] = [_expand_mount(spec, one) for spec in flags[name]]
        else:
            flags[name] = [one(v) for v in flags[name]]

    heredocs = instruction.heredocs
    if kind in ("COPY", "ADD"):
        heredocs = [
            replace(h, content=expand(h.content, env, escape=escape, process_quotes=False)) if h.expand else h
            for h in instruction.heredocs
        ]
    return replace(instruction, value=value, flags=flags, heredocs=heredocs)


def parse_directives(text: str) -> dict[str, str]:
    """The parser directives at the top of a Dockerfile (``escape``, ``syntax``), lower-cased keys.

    They must come first: the first line that is not a known ``# key=value`` ends the block
    (a blank line, a plain comment, an unknown directive, an instruction), exactly as the
    bundled BuildKit parser reads them.  Raises InvalidArgument for a repeated directive or an
    escape other than ``\\`` or a backtick.
    """
    directives: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        match = _DIRECTIVE.match(line)
        if not match:
            break
        key = match.group(1).lower()
        if key not in _KNOWN_DIRECTIVES:
            break
        if key in directives:
            raise _parse_error(number, f"only one {key} parser directive can be used")
        if key == "escape" and match.group(2) not in ("`", "\\"):
            raise _parse_error(number, f"invalid escape token '{match.group(2)}' does not match ` or \\")
        directives[key] = match.group(2)
    return directives


# -- parsing --------------------------------------------------------------------------------


def _parse_error(line: int | None, message: str) -> InvalidArgument:
    if line is None:
        return InvalidArgument(f"dockerfile parse error: {message}")
    return InvalidArgument(f"dockerfile parse error on line {line}: {message}")


def _parse_commands(text: str) -> list[dockerfile.Command]:
    try:
        return list(dockerfile.parse_string(text))
    except dockerfile.GoParseError as exc:
        message = str(exc)
        raise _parse_error(_error_line(text, message), message) from None


def _error_line(text: str, message: str) -> int | None:
    """The line of a parser error: the package's message has none, so find the shortest
    prefix of the file that fails with the same message (only runs on the error path)."""
    lines = text.splitlines(keepends=True)
    for count in range(1, len(lines) + 1):
        try:
            dockerfile.parse_string("".join(lines[:count]))
        except dockerfile.GoParseError as exc:
            if str(exc) == message:
                return count
    return None


def _parse_flags(kind: str, raw_flags: Iterable[str], line: int) -> dict[str, list[str]]:
    """BuildKit's BFlags.Parse, with its messages."""
    spec = _FLAG_SPECS.get(kind, {})
    flags: dict[str, list[str]] = {}
    for raw in raw_flags:
        if not raw.startswith("--"):
            raise _parse_error(line, f"Arg should start with -- : {raw}")
        if raw == "--":
            break
        name, has_value, value = raw[2:].partition("=")
        flag_type = spec.get(name)
        if flag_type is None:
            raise _parse_error(line, f"Unknown flag: {name}")
        if name in flags and flag_type != _LIST:
            raise _parse_error(line, f"Duplicate flag specified: {name}")
        if flag_type == _BOOL:
            if has_value and not value:
                raise _parse_error(line, f"Missing a value on flag: {name}")
            lowered = value.lower()
            if lowered not in ("", "true", "false"):
                raise _parse_error(line, f"Expecting boolean value for flag {name}, not: {value}")
            value = lowered or "true"
        elif not has_value:
            raise _parse_error(line, f"Missing a value on flag: {name}")
        flags.setdefault(name, []).append(value)
    return flags


def _heredocs(command: dockerfile.Command) -> list[Heredoc]:
    """The parser's heredocs, with the marker's details (``<<-``, quoting) it leaves out."""
    markers: dict[str, tuple[bool, bool]] = {}
    for chunk in command.value:
        for word in chunk.split():
            match = _HEREDOC_MARKER.match(word)
            if not match:
                continue
            marker = match.group(3)
            name = marker.replace('"', "").replace("'", "")
            quoted = marker != name
            markers.setdefault(name, (match.group(2) == "-", not quoted))
    out: list[Heredoc] = []
    for heredoc in command.heredocs:
        chomp, expand_body = markers.get(heredoc.name, (False, True))
        content = _LEADING_TABS.sub("", heredoc.content) if chomp else heredoc.content
        out.append(Heredoc(heredoc.name, content, heredoc.file_descriptor, expand_body, chomp))
    return out


def _onbuild_trigger(command: dockerfile.Command, lines: Sequence[str], escape: str) -> str:
    """The trigger text Docker stores for ``ONBUILD <instruction>``.

    The parser drops a trigger's heredoc body, so a multi-line trigger is re-read from the
    source lines and parsed on its own to get it back.
    """
    trigger = _ONBUILD_PREFIX.sub("", command.original, count=1)
    if command.end_line > command.start_line and "<<" in trigger and command.end_line <= len(lines):
        chunk = list(lines[command.start_line - 1 : command.end_line])
        chunk[0] = _ONBUILD_PREFIX.sub("", chunk[0], count=1)
        source = "".join(line if line.endswith("\n") else line + "\n" for line in chunk)
        if escape != DEFAULT_ESCAPE:
            source = f"# escape={escape}\n" + source
        try:
            parsed = list(dockerfile.parse_string(source))
        except dockerfile.GoParseError:
            parsed = []
        if len(parsed) == 1:
            trigger = parsed[0].original.rstrip("\n")
    return trigger


def _to_instruction(command: dockerfile.Command, lines: Sequence[str], escape: str) -> Instruction:
    kind = command.cmd.upper()
    line = command.start_line
    if kind not in INSTRUCTIONS:
        raise _parse_error(line, f"unknown instruction: {kind}")
    value = list(command.value)
    healthcheck_none = kind == "HEALTHCHECK" and bool(value) and value[0].upper() == "NONE"
    flags = (
        _parse_flags(kind, command.flags, line)
        if not healthcheck_none  # BuildKit does not look at flags for HEALTHCHECK NONE
        else {}
    )
    instruction = Instruction(
        kind=kind,
        value=value,
        flags=flags,
        json=bool(command.json),
        original=command.original,
        line=line,
        heredocs=_heredocs(command),
        end_line=command.end_line,
    )
    if kind == "ONBUILD":
        instruction.sub_kind = (command.sub_cmd or "").upper()
        if instruction.sub_kind:
            instruction.trigger = _onbuild_trigger(command, lines, escape)
    try:
        _check(instruction)
    except InvalidArgument as exc:
        raise _parse_error(line, str(exc)) from None
    return instruction


def _check(ins: Instruction) -> None:
    """Argument checks of BuildKit's instructions/parse.go (messages without the line)."""
    kind, args = ins.kind, ins.value
    if kind in ("ENV", "LABEL"):
        if not args:
            raise InvalidArgument(f"{kind} requires at least one argument")
        if len(args) % 2:
            raise InvalidArgument(f"Bad input to {kind}, too many arguments")
        if any(not key for key, _ in ins.pairs()):
            raise InvalidArgument(f"{kind} names can not be blank")
    elif kind in ("MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"):
        if len(args) != 1:
            raise InvalidArgument(f"{kind} requires exactly one argument")
    elif kind in ("ADD", "COPY"):
        if len(args) < 2:
            raise InvalidArgument(
                f"{kind} requires at least two arguments, but only one was provided. "
                "Destination could not be determined"
            )
        if _HEREDOC_MARKER.match(args[-1]) and not ins.json:
            raise InvalidArgument(f"{kind} cannot accept a heredoc as a destination")
    elif kind in ("EXPOSE", "ARG"):
        if not args:
            raise InvalidArgument(f"{kind} requires at least one argument")
        if kind == "ARG" and any(not name for name, _ in ins.args()):
            raise InvalidArgument("ARG names can not be blank")
    elif kind == "VOLUME":
        if not args:
            raise InvalidArgument("VOLUME requires at least one argument")
        if any(not v.strip() for v in args):
            raise InvalidArgument("VOLUME specified can not be an empty string")
    elif kind == "SHELL":
        if not ins.json:
            raise InvalidArgument("SHELL requires the arguments to be in JSON form")
        if not args:
            raise InvalidArgument("SHELL requires at least one argument")
    elif kind == "HEALTHCHECK":
        parse_healthcheck(ins)
    elif kind == "ONBUILD":
        _check_trigger_kind(ins.sub_kind)
    elif kind == "FROM":
        _stage_name(args)


def _check_trigger_kind(sub_kind: str) -> None:
    if not sub_kind:
        raise InvalidArgument("ONBUILD requires at least one argument")
    if sub_kind == "ONBUILD":
        raise InvalidArgument("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if sub_kind in ("MAINTAINER", "FROM"):
        raise InvalidArgument(f"{sub_kind} isn't allowed as an ONBUILD trigger")


def _stage_name(args: Sequence[str]) -> str:
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise InvalidArgument(
                f'invalid name for build stage: "{args[2]}", '
                "name can't start with a number or contain symbols"
            )
        return name
    if len(args) != 1:
        raise InvalidArgument("FROM requires either one or three arguments")
    return ""


def parse_onbuild_triggers(triggers: Sequence[str]) -> list[Instruction]:
    """Parse a base image's ``OnBuild`` triggers into instructions for the child build.

    Each trigger must be a single instruction (other than ONBUILD, FROM and MAINTAINER);
    it is read with the default escape character, as BuildKit does.  The executor runs them
    right after FROM, expanding them like any other instruction of the stage.
    """
    out: list[Instruction] = []
    for trigger in triggers:
        text = trigger if trigger.endswith("\n") else trigger + "\n"
        try:
            commands = list(dockerfile.parse_string(text))
        except dockerfile.GoParseError as exc:
            raise InvalidArgument(f"failed to parse onbuild trigger {trigger!r}: {exc}") from None
        if len(commands) != 1:
            raise InvalidArgument("onbuild trigger should be a single expression")
        try:
            _check_trigger_kind(commands[0].cmd.upper())
            out.append(_to_instruction(commands[0], text.splitlines(keepends=True), DEFAULT_ESCAPE))
        except InvalidArgument as exc:
            raise InvalidArgument(f"failed to parse onbuild trigger {trigger!r}: {exc}") from None
    return out


# -- stages ---------------------------------------------------------------------------------


def _stage_ref(ref: str, stages: Sequence[Stage]) -> int | None:
    """Index of the stage ``ref`` names (an index or an AS name); None if it is an image."""
    if _INDEX.match(ref):
        index = int(ref)
        if index < 0 or index >= len(stages):
            raise InvalidArgument(f"invalid stage index {index}")
        return index
    lowered = ref.lower()
    for stage in reversed(stages):  # a repeated name means the latest definition
        if stage.name and stage.name == lowered:
            return stage.index
    return None


def _mount_from(spec: str) -> str | None:
    for item in next(csv.reader([spec]), []):
        key, sep, value = item.partition("=")
        if sep and key.strip().lower() == "from":
            return value
    return None


def _expand_mount(spec: str, one: Callable[[str], str]) -> str:
    """Expand each ``key=value`` field of a ``--mount`` spec except ``from`` (kept literal)."""
    fields = []
    for item in next(csv.reader([spec]), []):
        key, sep, value = item.partition("=")
        if sep and key.strip().lower() != "from":
            item = f"{key}={one(value)}"
        fields.append(item)
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def _link_stages(stages: list[Stage]) -> None:
    for stage in stages:
        deps: set[int] = set()
        if stage.base_stage is not None:
            deps.add(stage.base_stage)
        for ins in stage.instructions:
            refs: list[str] = []
            if ins.kind == "COPY" and ins.flag("from"):
                refs.append(ins.flag("from"))
            elif ins.kind == "RUN":
                refs.extend(ref for spec in ins.flag_values("mount") if (ref := _mount_from(spec)))
            for ref in refs:
                try:
                    index = _stage_ref(ref, stages)
                except InvalidArgument as exc:
                    raise _parse_error(ins.line, str(exc)) from None
                if index is not None:
                    deps.add(index)
        stage.depends_on = sorted(deps)
    _check_cycles(stages)


def _check_cycles(stages: list[Stage]) -> None:
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done

    def visit(index: int) -> None:
        state[index] = 1
        for dep in stages[index].depends_on:
            if state.get(dep) == 1:
                raise InvalidArgument(f"circular dependency detected on stage: {stages[dep].display_name}")
            if dep not in state:
                visit(dep)
        state[index] = 2

    for stage in stages:
        if stage.index not in state:
            visit(stage.index)


def _needed(stages: list[Stage], target: Stage) -> list[int]:
    """The target's dependency closure, dependencies first, lowest index first when free."""
    reachable: set[int] = set()
    todo = [target.index]
    while todo:
        index = todo.pop()
        if index in reachable:
            continue
        reachable.add(index)
        todo.extend(stages[index].depends_on)
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(reachable):
        ready = min(i for i in reachable - done if all(d in done for d in stages[i].depends_on))
        order.append(ready)
        done.add(ready)
    return order


def make_plan(
    text: str,
    build_args: Mapping[str, str],
    target: str = "",
    *,
    dockerfile_name: str = "Dockerfile",
    platform: str = DEFAULT_PLATFORM,
    build_platform: str = DEFAULT_PLATFORM,
) -> BuildPlan:
    """Parse and check a Dockerfile, resolve meta ARGs and FROM, and pick the stages to build.

    ``build_args`` are the ``--build-arg`` values; ``target`` the ``--target`` stage name ("" =
    the last stage); ``dockerfile_name`` only appears in messages; ``platform`` and
    ``build_platform`` feed the predefined TARGET*/BUILD* ARGs.

    Raises InvalidArgument: ``the Dockerfile (Dockerfile) cannot be empty``; ``dockerfile parse
    error on line N: ...`` for syntax errors, unknown instructions and bad arguments or flags;
    ``... no build stage in current context`` for an instruction before the first FROM (or no
    FROM at all); ``target stage "x" could not be found``; ``invalid stage index N``;
    ``circular dependency detected on stage: x``.
    """
    directives = parse_directives(text)
    escape = directives.get("escape", DEFAULT_ESCAPE)
    empty = InvalidArgument(f"the Dockerfile ({dockerfile_name}) cannot be empty")
    if not text.strip():
        raise empty
    try:
        commands = _parse_commands(text)
    except InvalidArgument as exc:
        if str(exc).endswith("file with no instructions"):
            raise empty from None
        raise
    lines = text.splitlines(keepends=True)
    instructions = [_to_instruction(command, lines, escape) for command in commands]

    global_args: dict[str, str | None] = dict(platform_args(platform, build_platform))
    meta_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for ins in instructions:
        if ins.kind == "FROM":
            stages.append(_make_stage(ins, len(stages), stages, global_args, escape))
        elif not stages and ins.kind == "ARG":
            for name, default in ins.args():
                value = _meta_value(name, default, build_args, global_args, escape, ins.line)
                meta_args[name] = value
                global_args[name] = value
        elif not stages:
            raise _parse_error(ins.line, "no build stage in current context")
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise InvalidArgument("no build stage in current context")

    _link_stages(stages)

    if target:
        index = next((s.index for s in reversed(stages) if s.name and s.name == target.lower()), None)
        if index is None:
            raise InvalidArgument(f'target stage "{target}" could not be found')
        target_stage = stages[index]
    else:
        target_stage = stages[-1]
    return BuildPlan(
        stages=stages,
        meta_args=meta_args,
        escape=escape,
        syntax=directives.get("syntax", ""),
        target=target_stage,
        needed=_needed(stages, target_stage),
        global_args=global_args,
        build_args=dict(build_args),
    )


def _meta_value(
    name: str,
    default: str | None,
    build_args: Mapping[str, str],
    global_args: Mapping[str, str | None],
    escape: str,
    line: int,
) -> str | None:
    if name in build_args:
        return build_args[name]
    if default is None:
        # A bare meta ARG keeps a value already in the global scope (ARG TARGETPLATFORM).
        return global_args.get(name)
    try:
        return expand(default, _scope(global_args), escape=escape)
    except InvalidArgument as exc:
        raise _parse_error(line, str(exc)) from None


def _scope(args: Mapping[str, str | None]) -> dict[str, str]:
    """An expansion environment: declared-but-unset ARGs are left out (unset, not empty)."""
    return {name: value for name, value in args.items() if value is not None}


def _make_stage(
    ins: Instruction,
    index: int,
    earlier: Sequence[Stage],
    global_args: Mapping[str, str | None],
    escape: str,
) -> Stage:
    name = _stage_name(ins.value)
    scope = _scope(global_args)
    try:
        base = expand(ins.value[0], scope, escape=escape)
        platform = expand(ins.flag("platform"), scope, escape=escape) if ins.has_flag("platform") else ""
    except InvalidArgument as exc:
        raise _parse_error(ins.line, str(exc)) from None
    if not base:
        raise _parse_error(ins.line, f"base name ({ins.value[0]}) should not be blank")
    base_stage = None
    lowered = base.lower()
    for stage in reversed(earlier):
        if stage.name and stage.name == lowered:
            base_stage = stage.index
            break
    return Stage(
        index=index,
        name=name,
        base=base,
        platform=platform,
        instructions=[],
        base_stage=base_stage,
        from_instruction=ins,
    )
