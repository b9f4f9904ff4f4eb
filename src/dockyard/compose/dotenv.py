"""``.env`` and ``env_file`` parsing by docker compose's rules (compose-go's ``dotenv`` package).

One statement per line (several may share a line after a quoted value, as in compose)::

    # a comment line; blank lines are skipped
    KEY=value                 unquoted: up to the end of the line; `` #`` starts a comment,
                              ``a#b`` keeps its hash; trailing blanks are trimmed
    export KEY=value          the ``export`` prefix is accepted and ignored
    KEY: value                compose also accepts the YAML-ish separator
    KEY='literal $X \\n'       single quotes: literal (only ``\\'`` is unescaped), no interpolation
    KEY="a\\nb ${X}"           double quotes: ``\\n \\r \\t \\a \\b \\f \\v \\\\ \\" \\$`` and ``\\0NNN``
                              escapes, may span several lines, then interpolation
    KEY=${OTHER:-x}/bin       unquoted and double-quoted values are interpolated (see
                              :mod:`dockyard.compose.interpolate`) against the environment first,
                              then the keys defined earlier in the same file
    KEY                       a key alone takes its value from the environment, and is left out
                              when the environment does not have it

Key names are letters, digits, ``_ . - [ ]``.  The parser is pure: the caller reads the file and passes
its text, plus the environment to look variables up in.  Errors are
:class:`~dockyard.errors.InvalidArgument` naming the source and the line.
"""

from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Mapping
from typing import Final

from dockyard.compose.interpolate import MissingHook, substitute
from dockyard.errors import InvalidArgument

_EXPORT: Final = re.compile(r"export[ \t]+")
_ESCAPE: Final = re.compile(r"\\(?:[abfnrtv$\"\\]|0[0-7]{3})")
_ESCAPES: Final = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                   '"': '"', "\\": "\\", "$": "$$"}
_SPACE: Final = " \t\v\f\r\x85\xa0"  # blanks that are not a line break (compose's isSpace)


def parse_dotenv(
    text: str,
    environ: Mapping[str, str] | None = None,
    *,
    source: str = ".env",
    on_missing: MissingHook | None = None,
) -> dict[str, str]:
    """Parse ``text`` into an ordered ``{key: value}``; a later key overrides an earlier one.

    ``environ`` is where ``${VAR}`` and a bare ``KEY`` are looked up (for a project ``.env`` it is the
    shell environment; for a service's ``env_file`` the project environment).  The file's own values
    are *not* overridden by ``environ`` here — which one wins is the caller's rule.
    """
    return _Parser(text, environ or {}, source, on_missing).parse()


class _Parser:
    def __init__(self, text: str, environ: Mapping[str, str], source: str,
                 on_missing: MissingHook | None) -> None:
        self.s = text.removeprefix("\ufeff")
        self.i = 0
        self.line = 1
        self.environ = environ
        self.source = source
        self.on_missing = on_missing
        self.out: dict[str, str] = {}

    def fail(self, message: str, line: int | None = None) -> InvalidArgument:
        return InvalidArgument(f"{self.source}: line {line or self.line}: {message}")

    def parse(self) -> dict[str, str]:
        while self.statement_start():
            self.statement()
        return self.out

    def statement_start(self) -> bool:
        """Skip blanks, line breaks and comment lines; False at the end of the text."""
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c == "\n":
                self.line += 1
                self.i += 1
            elif c.isspace():
                self.i += 1
            elif c == "#":
                nl = s.find("\n", self.i)
                self.i = n if nl < 0 else nl
            else:
                return True
        return False

    def statement(self) -> None:
        s, n = self.s, len(self.s)
        m = _EXPORT.match(s, self.i)
        if m is not None:
            self.i = m.end()
        start = self.i
        while self.i < n and s[self.i] not in "=:\n":
            c = s[self.i]
            if not (c in _SPACE or c.isalnum() or c in "_.-[]"):
                name = s[start:].split("\n", 1)[0]
                raise self.fail(f"unexpected character {c!r} in variable name {name!r}")
            self.i += 1
        key = s[start:self.i].rstrip()
        if any(c in _SPACE for c in key):
            raise self.fail(f"key cannot contain a space: {key!r}")
        if not key:
            raise self.fail("missing variable name before '='")
        if self.i >= n or s[self.i] == "\n":  # KEY alone: inherited from the environment
            value = self.environ.get(key)
            if value is not None:
                self.out[key] = value
            return
        self.i += 1  # past '=' or ':'
        while self.i < n and s[self.i] in _SPACE:
            self.i += 1
        quote = s[self.i] if self.i < n and s[self.i] in "'\"" else ""
        if quote:
            self.out[key] = self.quoted(quote)
        else:
            nl = s.find("\n", self.i)
            end = n if nl < 0 else nl
            raw = s[self.i:end]
            self.i = end
            raw = raw.split(" #", 1)[0].rstrip()
            self.out[key] = self.expand(raw)

    def quoted(self, quote: str) -> str:
        s, n = self.s, len(self.s)
        first_line = self.line
        start = self.i
        chars: list[str] = []
        i = self.i + 1
        while i < n:
            c = s[i]
            if c == "\n":
                self.line += 1
            if c == "\\" and i + 1 < n:
                nxt = s[i + 1]
                if nxt == "\n":
                    self.line += 1
                # an escaped quote loses its backslash; other escapes are kept for the next step
                chars.append(nxt if nxt == quote else "\\" + nxt)
                i += 2
                continue
            if c == quote:
                self.i = i + 1
                value = "".join(chars)
                if quote == '"':
                    value = self.expand(_ESCAPE.sub(_unescape, value), first_line)
                return value
            chars.append(c)
            i += 1
        shown = s[start:].split("\n", 1)[0]
        raise self.fail(f"unterminated quoted value {shown}", first_line)

    def expand(self, value: str, line: int | None = None) -> str:
        if "$" not in value:
            return value
        try:
            # the environment wins over keys defined earlier in the file (compose-go's lookup order)
            lookup = ChainMap(self.environ, self.out)  # type: ignore[arg-type]
            return substitute(value, lookup, on_missing=self.on_missing)
        except InvalidArgument as exc:
            raise self.fail(str(exc), line) from None


def _unescape(m: re.Match[str]) -> str:
    seq = m.group(0)[1:]
    if seq[0] == "0":
        return chr(int(seq, 8))
    return _ESCAPES[seq]
