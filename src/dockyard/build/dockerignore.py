"""Which context files a build may see: Docker's .dockerignore rules (moby/patternmatcher).

Where the patterns come from (the context side, done by context.py)::

    <context>/
      .dockerignore                  used when the Dockerfile has no ignore file of its own
      build/app.Dockerfile
      build/app.Dockerfile.dockerignore   "<Dockerfile>.dockerignore" next to the Dockerfile wins
                                          over <context>/.dockerignore (BuildKit's rule;
                                          see ignore_file_candidates)

Reading the file (:func:`read_ignore_patterns`, the CLI's ``ignorefile.ReadAll``): a UTF-8 BOM
is dropped; a line that *starts* with ``#`` is a comment (``  #x`` is a pattern); each line is
trimmed and blank lines skipped; ``!`` marks an exception; each pattern is cleaned like Go's
``filepath.Clean`` (``./a//b/../c`` is ``a/c``) and a leading ``/`` removed, because the
context root is both the working directory and ``/``: ``/foo/bar`` and ``foo/bar`` are the same
pattern.

Matching (:class:`IgnoreMatcher`, ``PatternMatcher.MatchesOrParentMatches``): paths are
relative to the context root, ``/``-separated.

- ``*`` is any run of non-``/`` characters, ``?`` one non-``/`` character, ``[a-z]`` /
  ``[^a-z]`` a character class, ``\\x`` the character x (Go's ``filepath.Match``).
- ``**`` is any number of directories, including none: ``**/*.go`` matches ``a.go`` and
  ``x/y/a.go``; ``dir/**`` everything below ``dir``; a pattern that begins with ``**`` and has
  no other wildcard matches by suffix (``**file`` matches ``dir/myfile`` — Docker's own quirk).
- A pattern matches a path if it matches the path itself *or any parent directory*: ``docs``
  excludes ``docs/a/b.md``; ``*.md`` matches only at the top (``sub/x.md`` is not excluded).
- Patterns are applied in order and the last one that matches decides: ``!README.md`` after
  ``*.md`` keeps README.md, ``README-secret.md`` after ``!README*.md`` excludes it again.
- There is no gitignore-style trailing-slash rule: ``docs/`` is cleaned to ``docs`` and excludes
  a file named docs too.  The context root itself is never excluded (``.`` matches nothing).

Walking: a directory that is excluded may still hold files an exception brings back
(``docs`` then ``!docs/README.md``).  context.py must descend into an excluded directory when
:meth:`IgnoreMatcher.may_contain_exceptions` says so, and then test every file in it.

The Dockerfile and the ignore file themselves: they may be excluded, and they are still read,
because the build needs them; but an excluded Dockerfile or .dockerignore is *not* visible to
COPY/ADD ("These files are still sent to the daemon because it needs them to do its job. But
the ADD and COPY instructions do not copy them to the image.").  context.py applies that rule;
this module only answers :meth:`IgnoreMatcher.excluded`.

Errors are InvalidArgument: a lone ``!`` (``illegal exclusion pattern: "!"``) or a malformed
pattern (``syntax error in pattern``, e.g. an unclosed ``[``), raised when the matcher is built,
so a bad .dockerignore fails the build before anything is sent.

Pure: no os (``posixpath`` only).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from dockyard.errors import InvalidArgument

__all__ = [
    "IgnoreMatcher",
    "Pattern",
    "clean_path",
    "ignore_file_candidates",
    "read_ignore_patterns",
]

_BOM = "\ufeff"
_ERR_BAD_PATTERN = "syntax error in pattern"


def clean_path(path: str) -> str:
    """Go's ``filepath.Clean`` on a ``/`` path: the shortest equivalent, "." for empty.

    posixpath.normpath differs in one place that matters here: it keeps a leading ``//``.
    """
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    joined = "/".join(parts)
    if rooted:
        return "/" + joined
    return joined or "."


def read_ignore_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file's text, normalised as the docker CLI does.

    Comments (lines beginning with ``#``) and blank lines are dropped; each pattern is trimmed,
    cleaned and loses a leading ``/``; ``!`` exceptions keep their ``!`` in front (``! /a/b``
    becomes ``!a/b``).  A lone ``!`` is returned as is: :class:`IgnoreMatcher` rejects it.
    """
    patterns: list[str] = []
    for index, line in enumerate(text.splitlines()):
        if index == 0 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def ignore_file_candidates(dockerfile: str) -> list[str]:
    """Ignore files to try, first found wins: ``<dockerfile>.dockerignore``, then ``.dockerignore``.

    ``dockerfile`` is the Dockerfile's path as given to ``-f`` (relative to the context or
    absolute); the second entry is relative to the context root.
    """
    return [dockerfile + ".dockerignore", ".dockerignore"]


# -- one pattern ----------------------------------------------------------------------------

_EXACT, _PREFIX, _SUFFIX, _REGEX = "exact", "prefix", "suffix", "regex"


@dataclass(frozen=True)
class Pattern:
    """One cleaned pattern.  ``text`` has no ``!``; ``exclusion`` says it had one (an exception).

    Matching follows patternmatcher's compile(): a pattern with no wildcards is compared
    exactly, ``literal/**`` by prefix, ``**literal`` by suffix, anything else by a regex.
    """

    text: str
    exclusion: bool
    kind: str
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, text: str, exclusion: bool) -> Pattern:
        _validate(text)
        kind, regex = _compile(text)
        return cls(text, exclusion, kind, regex)

    def match(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])  # strip the trailing "**"
        if self.kind == _SUFFIX:
            suffix = self.text[2:]  # strip the leading "**"
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]  # "**/foo" matches "foo"
        assert self.regex is not None
        return self.regex.match(path) is not None


def _validate(text: str) -> None:
    """Reject what Go's filepath.Match rejects: dangling ``\\``, malformed ``[...]``."""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                raise InvalidArgument(_ERR_BAD_PATTERN)
            i += 2
        elif ch == "[":
            i = _class_end(text, i)
        else:
            i += 1


def _class_end(text: str, start: int) -> int:
    """Index just past the ``]`` closing the class that opens at ``start``; validates it.

    filepath.Match's grammar: ``[`` [``^``] one or more ranges ``c`` or ``lo-hi`` ``]``, where
    c is any character but ``\\``, ``-`` and ``]``, or an escaped character.
    """
    i = start + 1
    if i < len(text) and text[i] == "^":
        i += 1
    count = 0
    while True:
        if i >= len(text):
            raise InvalidArgument(_ERR_BAD_PATTERN)
        if text[i] == "]" and count > 0:
            return i + 1
        i = _class_char(text, i)
        if i < len(text) and text[i] == "-":
            i = _class_char(text, i + 1)
        count += 1


def _class_char(text: str, i: int) -> int:
    if i >= len(text) or text[i] in "-]":
        raise InvalidArgument(_ERR_BAD_PATTERN)
    if text[i] == "\\":
        if i + 1 >= len(text):
            raise InvalidArgument(_ERR_BAD_PATTERN)
        return i + 2
    return i + 1


def _class_regex(body: str) -> str:
    """A validated class body (between ``[`` and ``]``) as a Python character class."""
    out = ["["]
    i = 0
    if body.startswith("^"):
        out.append("^")
        i = 1
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            out.append(re.escape(body[i + 1]))
            i += 2
        elif ch == "-":
            out.append("-")
            i += 1
        else:
            out.append(re.escape(ch))
            i += 1
    out.append("]")
    return "".join(out)


def _compile(text: str) -> tuple[str, re.Pattern[str] | None]:
    kind = _EXACT
    regex = ["^"]
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        first = i == 0
        i += 1
        if ch == "*":
            if i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":  # "**/" is "**"
                    i += 1
                if i >= n:
                    # "**" at the end matches everything below, as in .gitignore.
                    if kind == _EXACT:
                        kind = _PREFIX
                    else:
                        regex.append(".*")
                        kind = _REGEX
                else:
                    regex.append("(.*/)?")  # any number of directories, even none
                    kind = _REGEX
                if first:
                    kind = _SUFFIX
            else:
                regex.append("[^/]*")
                kind = _REGEX
        elif ch == "?":
            regex.append("[^/]")
            kind = _REGEX
        elif ch == "\\":
            regex.append(re.escape(text[i]))
            i += 1
            kind = _REGEX
        elif ch == "[":
            end = _class_end(text, i - 1)
            regex.append(_class_regex(text[i : end - 1]))
            i = end
            kind = _REGEX
        else:
            regex.append(re.escape(ch))
    if kind != _REGEX:
        return kind, None
    regex.append("$")
    try:
        return kind, re.compile("".join(regex), re.DOTALL)
    except re.error as exc:  # e.g. a reversed range [z-a]; Go's regexp rejects it too
        raise InvalidArgument(_ERR_BAD_PATTERN) from exc


# -- the matcher ----------------------------------------------------------------------------


class IgnoreMatcher:
    """Decides, for paths relative to the context root, whether .dockerignore excludes them.

    Build it once per build from :func:`read_ignore_patterns` (raw pattern strings are also
    accepted: they are trimmed and cleaned the same way).  Raises InvalidArgument for a lone
    ``!`` or a malformed pattern.  Immutable, so one matcher can serve concurrent walks.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        compiled: list[Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            exclusion = text.startswith("!")
            if exclusion:
                text = text[1:].strip()
                if not text:
                    raise InvalidArgument('illegal exclusion pattern: "!"')
            text = clean_path(text)
            if len(text) > 1 and text.startswith("/"):
                text = text[1:]
            compiled.append(Pattern.compile(text, exclusion))
        self._patterns: tuple[Pattern, ...] = tuple(compiled)
        self._exceptions = tuple(p for p in compiled if p.exclusion)

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        return self._patterns

    @property
    def has_exceptions(self) -> bool:
        """True if any ``!`` pattern exists: only then can an excluded directory hold kept files."""
        return bool(self._exceptions)

    def excluded(self, path: str, is_dir: bool = False) -> bool:
        """Whether ``path`` is left out of the context.

        ``path`` is relative to the context root and ``/``-separated (a leading ``/`` or ``./``
        is tolerated).  ``is_dir`` does not change the answer — Docker's patterns do not
        distinguish files from directories — and is accepted so callers can pass what they know.
        The root itself is never excluded.
        """
        del is_dir  # Docker's rules are the same for both
        file = clean_path(path.lstrip("/")) if path else "."
        if file == ".":
            return False
        parent = posixpath.dirname(file)
        parents: list[str] = []
        if parent:
            parts = parent.split("/")
            parents = ["/".join(parts[: i + 1]) for i in range(len(parts))]

        matched = False
        for pattern in self._patterns:
            # An include pattern cannot change an already-excluded path, and an exception
            # cannot change a path not excluded yet: skip them (last match wins).
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(file) or any(pattern.match(p) for p in parents)
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_contain_exceptions(self, dir_path: str) -> bool:
        """Whether an excluded directory must still be walked, because an exception may keep
        something below it.

        Conservative (it may say True needlessly, never False wrongly): Docker's CLI only looks
        for exceptions that literally start with ``dir_path/``; this also honours wildcards, so
        ``!**/keep.txt`` or ``!*/keep.txt`` bring files back from any excluded directory.
        """
        if not self._exceptions:
            return False
        directory = clean_path(dir_path.lstrip("/")) if dir_path else "."
        if directory == ".":
            return True
        dir_parts = directory.split("/")
        for pattern in self._exceptions:
            if _could_match_below(pattern.text.split("/"), dir_parts):
                return True
        return False


def _could_match_below(pattern_parts: list[str], dir_parts: list[str]) -> bool:
    """Could a path under ``dir_parts`` match the pattern whose components are pattern_parts?"""
    for index, name in enumerate(dir_parts):
        if index >= len(pattern_parts):
            # The pattern names an ancestor of (or) the directory: it matches through parents.
            return True
        component = pattern_parts[index]
        if "**" in component:
            return True
        try:
            single = Pattern.compile(component, False)
        except InvalidArgument:
            return True
        if not single.match(name):
            return False
    return True
