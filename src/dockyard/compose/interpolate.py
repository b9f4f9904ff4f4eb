"""The Compose Specification's variable interpolation, over one string or a whole parsed YAML tree.

Syntax (the spec's "Interpolation" section, which follows the shell's parameter expansion)::

    $VAR  ${VAR}          the value; an unset variable becomes "" (and a warning is recorded)
    ${VAR:-default}       default when VAR is unset or empty
    ${VAR-default}        default when VAR is unset
    ${VAR:?message}       error when VAR is unset or empty
    ${VAR?message}        error when VAR is unset
    ${VAR:+replacement}   replacement when VAR is set and not empty, else ""
    ${VAR+replacement}    replacement when VAR is set, else ""
    $$                    a literal "$"

Defaults, messages and replacements are templates themselves, so ``${A:-${B:-x}}`` nests.  They are
expanded only when they are used (as a shell does): ``${A:-${B:?b}}`` is no error while A is set.
A ``$`` followed by anything else (``$5``, a trailing ``$``, ``${}``, an unclosed ``${``) is an error,
as in docker compose: a literal dollar must be written ``$$``.

Which environment wins (the spec's "Interpolation" and ".env file" sections): a variable set in
the shell environment overrides the same variable in the project's ``.env`` file —
:func:`project_environment` builds that mapping once; everything here only reads from it.

In a tree only string *values* are interpolated, never mapping keys.  Errors are
:class:`~dockyard.errors.InvalidArgument` naming the dotted path of the value
(``services.web.image``) and what is wrong, in docker compose's words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from dockyard.errors import InvalidArgument

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS: Final = (":-", ":?", ":+", "-", "?", "+")

#: called with the name of each variable that was read but not set (compose warns about them)
MissingHook = Callable[[str], None]
#: called as ``convert(path, value)`` on each string that interpolation changed; returns the value to keep
ConvertHook = Callable[[tuple[str | int, ...], str], Any]


class _TemplateError(Exception):
    """Internal: an invalid template or a missing required variable, before the path is known."""

    def __init__(self, message: str, *, invalid: bool) -> None:
        super().__init__(message)
        self.invalid = invalid


def project_environment(environ: Mapping[str, str], dotenv: Mapping[str, str] | None) -> dict[str, str]:
    """The mapping interpolation reads: the ``.env`` values, overridden by the shell environment."""
    merged = dict(dotenv or {})
    merged.update(environ)
    return merged


def substitute(template: str, env: Mapping[str, str], *, on_missing: MissingHook | None = None) -> str:
    """Expand ``template`` against ``env``.

    Raises :class:`InvalidArgument` for an invalid template or a missing required variable; the
    message has no location, :func:`interpolate_tree` adds the path.
    """
    try:
        return _Expander(env, on_missing).expand(template)
    except _TemplateError as exc:
        if exc.invalid:
            raise InvalidArgument(f"invalid interpolation format: {exc}") from None
        raise InvalidArgument(str(exc)) from None


def interpolate_tree(
    tree: Any,
    env: Mapping[str, str],
    *,
    path: tuple[str | int, ...] = (),
    on_missing: MissingHook | None = None,
    convert: ConvertHook | None = None,
    where: str = "",
) -> Any:
    """Return a copy of ``tree`` (dicts, lists, scalars as YAML parses them) with every string value
    interpolated.  Keys are kept verbatim.

    ``convert`` lets the loader turn an interpolated string back into the type the schema wants
    (``read_only: ${RO}`` -> ``True``), as compose-go's type-cast table does.  ``where`` (a file name)
    prefixes error messages.
    """
    expander = _Expander(env, on_missing)
    return _walk(tree, path, expander, convert, where)


def dotted(path: tuple[str | int, ...]) -> str:
    """``("services", "web", "ports", 0)`` -> ``"services.web.ports.0"``."""
    return ".".join(str(p) for p in path)


def _walk(node: Any, path: tuple[str | int, ...], expander: _Expander, convert: ConvertHook | None,
          where: str) -> Any:
    if isinstance(node, str):
        if "$" not in node:
            return node
        try:
            value = expander.expand(node)
        except _TemplateError as exc:
            prefix = f"{where}: " if where else ""
            if exc.invalid:
                raise InvalidArgument(
                    f"{prefix}invalid interpolation format for {dotted(path)}: {exc}. "
                    "You may need to escape any $ with another $") from None
            raise InvalidArgument(f"{prefix}error while interpolating {dotted(path)}: {exc}") from None
        return convert(path, value) if convert is not None else value
    # type(node)(...) keeps dict/list subclasses (the loader marks ``!override`` values that way)
    if isinstance(node, dict):
        return type(node)({k: _walk(v, (*path, str(k)), expander, convert, where) for k, v in node.items()})
    if isinstance(node, list):
        return type(node)([_walk(v, (*path, i), expander, convert, where) for i, v in enumerate(node)])
    return node


class _Expander:
    """A small recursive-descent expander: one pass over the template, nested braces matched."""

    def __init__(self, env: Mapping[str, str], on_missing: MissingHook | None) -> None:
        self.env = env
        self.on_missing = on_missing

    def lookup(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None and self.on_missing is not None:
            self.on_missing(name)
        return value

    def expand(self, template: str) -> str:
        out: list[str] = []
        i, n = 0, len(template)
        while i < n:
            j = template.find("$", i)
            if j < 0:
                out.append(template[i:])
                break
            out.append(template[i:j])
            if j + 1 >= n:
                raise _TemplateError(f"{template!r}: a lone '$' at the end", invalid=True)
            nxt = template[j + 1]
            if nxt == "$":
                out.append("$")
                i = j + 2
            elif nxt == "{":
                end = _closing_brace(template, j + 2)
                if end < 0:
                    raise _TemplateError(f"{template!r}: unclosed '${{'", invalid=True)
                out.append(self.braced(template[j + 2:end], template))
                i = end + 1
            else:
                m = _NAME.match(template, j + 1)
                if m is None:
                    raise _TemplateError(f"{template!r}", invalid=True)
                out.append(self.lookup(m.group(0)) or "")
                i = m.end()
        return "".join(out)

    def braced(self, body: str, template: str) -> str:
        m = _NAME.match(body)
        if m is None:
            raise _TemplateError(f"{template!r}", invalid=True)
        name, rest = m.group(0), body[m.end():]
        if rest == "":
            return self.lookup(name) or ""
        op = next((o for o in _OPERATORS if rest.startswith(o)), None)
        if op is None:
            raise _TemplateError(f"{template!r}", invalid=True)
        arg = rest[len(op):]
        value = self.env.get(name)
        empty_counts = op.startswith(":")
        usable = value is not None and (value != "" or not empty_counts)
        kind = op[-1]
        if kind == "-":
            if usable:
                return value  # type: ignore[return-value]
            return self.expand(arg)
        if kind == "?":
            if usable:
                return value  # type: ignore[return-value]
            message = self.expand(arg)
            text = f"required variable {name} is missing a value"
            raise _TemplateError(f"{text}: {message}" if message else text, invalid=False)
        # "+": the replacement when set (and, for ":+", not empty)
        return self.expand(arg) if usable else ""


def _closing_brace(s: str, start: int) -> int:
    """Index of the ``}`` closing a ``${`` whose body starts at ``start``; nested ``${...}`` and
    ``$$`` are skipped.  -1 when unclosed."""
    depth, i, n = 1, start, len(s)
    while i < n:
        c = s[i]
        if c == "$" and i + 1 < n and s[i + 1] in "${":
            if s[i + 1] == "{":
                depth += 1
            i += 2
            continue
        if c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1
