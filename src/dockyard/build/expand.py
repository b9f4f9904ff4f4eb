"""Docker's variable substitution in Dockerfiles: BuildKit's shell lexer, ported by behaviour.

The builder (not a shell) expands ``$VAR`` in the instructions that take variables (plan.py's
:func:`~dockyard.build.plan.expands_variables` says which); RUN, CMD and ENTRYPOINT in shell form are
left alone because ``/bin/sh`` expands them in the container.  The rules are those of
``moby/buildkit`` ``frontend/dockerfile/shell/lex.go``, which imitates the POSIX shell only
as far as Docker needs:

===========================  =====================================================================
``$VAR`` ``${VAR}``          the value, or "" when unset.  A name is letters, digits and ``_``; a
                             name that starts with a digit is all the digits (``$10`` is var
                             "10"); ``$@ $* $# $? $- $$ $! $0`` name one special character.  A
                             ``$`` not followed by a name stays a literal ``$``.
``${VAR:-word}``             word if VAR is unset *or empty*, else the value
``${VAR-word}``              word if VAR is unset, else the value (even "")
``${VAR:+word}``             word if VAR is set and not empty, else ""
``${VAR+word}``              word if VAR is set (even to ""), else ""
``${VAR:?msg}``              the value; InvalidArgument ``VAR: msg`` if unset or empty
``${VAR?msg}``               the value; InvalidArgument if unset (an empty msg becomes Docker's
                             "is not allowed to be unset" / "is not allowed to be empty")
``${VAR#pat}`` ``##``        remove the shortest / longest prefix matching the shell pattern
``${VAR%pat}`` ``%%``        remove the shortest / longest suffix (``*`` and ``?`` wildcards)
``${VAR/pat/rep}`` ``//``    replace the first / every match of pat
===========================  =====================================================================

``word`` is itself a word: it may hold quotes, escapes and further ``$`` expansions (nested
words), and it ends at the first ``}`` outside quotes.  Anything else after the name
(``${VAR=x}``, ``${VAR:=x}``) is ``unsupported modifier``; ``${}`` / ``${:x}`` is ``bad
substitution``.

Quoting, as the lexer removes it (``ProcessWord``):

- ``'...'`` is literal: no expansion, no escapes, and a ``'`` cannot be escaped inside.
- ``"..."`` expands ``$``; the escape character only escapes ``"``, ``$`` and itself there
  (``"\\n"`` stays backslash-n, as in sh).
- outside quotes the escape character makes the next character literal (``\\$HOME`` is the
  text ``$HOME``; ``\\ `` is a space that does not split words); a trailing escape is dropped.
- The escape character is ``\\`` unless the Dockerfile says ``# escape=`` + backtick.

Word splitting (``ProcessWords``, here :func:`expand_words`) happens *after* substitution:
unquoted whitespace separates words, and so does whitespace inside an unquoted ``$VAR``'s value
(``A="x y"`` makes ``$A`` two words, ``"$A"`` one); quoted or escaped whitespace does not.
Empty words (``""``) are dropped, as BuildKit does.

Variable names are case-sensitive (Linux).  Errors are :class:`~dockyard.errors.InvalidArgument`
with BuildKit's text: ``failed to process "<word>": <reason>``.

Pure: no I/O, no os; the whole module is one small recursive-descent scanner over a string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from dockyard.errors import InvalidArgument

__all__ = ["DEFAULT_ESCAPE", "expand", "expand_words"]

DEFAULT_ESCAPE = "\\"

# Single-character special parameters of POSIX sh (`$@`, `$?`, ...): lex.go's isSpecialParam.
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class _LexError(Exception):
    """A lexing failure; turned into InvalidArgument with the whole word at the top."""


class _Words:
    """The word splitter that runs alongside substitution (lex.go's wordsStruct).

    ``add_char`` splits on whitespace; ``add_raw`` never does (quoted or escaped text).
    ``in_word`` tracks whether a word has started, so ``""`` next to text joins it.
    """

    __slots__ = ("in_word", "word", "words")

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _Lexer:
    """One pass over one word.  ``pos`` is the scanner; ``None`` stands for EOF."""

    def __init__(self, src: str, env: Mapping[str, str], escape: str, process_quotes: bool) -> None:
        self.src = src
        self.pos = 0
        self.env = env
        self.escape = escape
        self.process_quotes = process_quotes
        self.raw_escapes = False

    # -- scanner ----------------------------------------------------------------------------
    def peek(self) -> str | None:
        return self.src[self.pos] if self.pos < len(self.src) else None

    def next(self) -> str | None:
        if self.pos >= len(self.src):
            return None
        ch = self.src[self.pos]
        self.pos += 1
        return ch

    # -- words ------------------------------------------------------------------------------
    def process_stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        """Read up to ``stop`` (consumed) or EOF when ``stop`` is None.

        ``raw_escapes`` keeps escape characters in the result: the pattern of ``${VAR#pat}``
        and ``${VAR/pat/rep}`` needs them to tell ``\\*`` from ``*``.
        """
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            result: list[str] = []
            words = _Words()
            while (ch := self.peek()) is not None:
                if stop is not None and ch == stop:
                    self.next()
                    return "".join(result), words.result()
                if ch == "$":
                    text = self.process_dollar()
                    result.append(text)
                    words.add_string(text)  # an unquoted expansion is split on its whitespace
                    continue
                if self.process_quotes and ch in "'\"":
                    text = self.process_single_quote() if ch == "'" else self.process_double_quote()
                    result.append(text)
                    words.add_raw(text)
                    continue
                self.next()
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    escaped = self.next()
                    if escaped is None:  # a trailing escape is dropped
                        break
                    words.add_raw(escaped)
                    result.append(escaped)
                else:
                    words.add_char(ch)
                    result.append(ch)
            if stop is not None:
                raise _LexError(f"unexpected end of statement while looking for matching {stop}")
            return "".join(result), words.result()
        finally:
            self.raw_escapes = saved

    def process_single_quote(self) -> str:
        # Everything up to the next ' is literal; sh offers no way to escape a ' inside.
        self.next()
        out: list[str] = []
        while True:
            ch = self.next()
            if ch is None:
                raise _LexError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def process_double_quote(self) -> str:
        # $ expands; the escape character escapes only " $ and itself, other escapes stay as typed.
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if ch is None:
                raise _LexError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.process_dollar())
                continue
            self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if following is None:
                    continue  # the missing closing quote is reported on the next turn
                if following in ('"', "$", self.escape):
                    ch = self.next() or ""
            out.append(ch)

    # -- $ ----------------------------------------------------------------------------------
    def process_dollar(self) -> str:
        self.next()  # the $
        if self.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            return self.env.get(name, "")

        self.next()  # the {
        first = self.peek()
        if first is None:
            raise _LexError("syntax error: missing '}'")
        if first in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        if ch is None:
            raise _LexError("syntax error: missing '}'")
        if ch == "}":
            return self.env.get(name, "")
        if ch == "/":
            return self.process_replace(name)

        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch or ""
        if ch is None or ch not in "+-?#%":
            if null_is_unset:
                # After ':' BuildKit reads the word first, so a missing '}' is reported as such.
                self._stop_on_brace(raw=False)
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")

        word = self._stop_on_brace(raw=ch in "#%")
        is_set = name in self.env
        value = self.env.get(name, "")
        empty_counts_as_unset = null_is_unset and value == ""
        if ch == "-":
            return word if not is_set or empty_counts_as_unset else value
        if ch == "+":
            return "" if not is_set or empty_counts_as_unset else word
        if ch == "?":
            if not is_set:
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if empty_counts_as_unset:
                raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        # '#' and '%': a doubled operator is the greedy form.
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        if ch == "#":
            return _trim_prefix(word, value, greedy)
        return _trim_suffix(word, value, greedy)

    def _stop_on_brace(self, raw: bool) -> str:
        try:
            word, _ = self.process_stop_on("}", raw)
        except _LexError:
            if self.peek() is None:
                raise _LexError("syntax error: missing '}'") from None
            raise
        return word

    def process_replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.process_stop_on("/", True)
        except _LexError:
            if self.peek() is None:
                raise _LexError("syntax error: missing '/' in ${}") from None
            raise
        replacement = self._stop_on_brace(raw=True)
        value = self.env.get(name, "")
        regex = _shell_pattern_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return regex.sub(lambda _m: replacement, value)
        match = regex.search(value)
        if match is None:
            return value
        return value[: match.start()] + replacement + value[match.end() :]

    def process_name(self) -> str:
        # Letters, digits and _; a leading digit means "all the digits"; or one special param.
        start = self.pos
        ch = self.peek()
        if ch is None:
            return ""
        if ch.isdecimal():
            while (c := self.peek()) is not None and c.isdecimal():
                self.pos += 1
            return self.src[start : self.pos]
        if ch in _SPECIAL_PARAMS:
            self.pos += 1
            return ch
        while (c := self.peek()) is not None and (c.isalpha() or c.isdecimal() or c == "_"):
            self.pos += 1
        return self.src[start : self.pos]


# -- ${VAR#pattern} and friends ------------------------------------------------------------


def _shell_pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A sh pattern (``*``, ``?``, ``\\`` escapes; no bracket expressions) as a regex.

    As in BuildKit, ``\\}`` and ``\\/`` drop the backslash (they only protect the ``${}``
    syntax); any other escape must be of ``*``, ``?`` or ``\\``.
    """
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):
                continue
            if nxt not in ("*", "?", "\\"):
                raise _LexError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _shell_pattern_regex(pattern, greedy=greedy, anchored=True).match(value)
    return value[match.end() :] if match else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern but keep each ``\\x`` escape pair in order (``a\\*c`` -> ``c\\*a``)."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i : i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex cannot find the shortest *rightmost* match, so search the reversed string.
    trimmed = _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)
    return trimmed[::-1]


# -- entry points ---------------------------------------------------------------------------


def _run(word: str, env: Mapping[str, str], escape: str, process_quotes: bool) -> tuple[str, list[str]]:
    if len(escape) != 1:
        raise InvalidArgument(f"invalid escape token '{escape}' does not match ` or \\")
    lexer = _Lexer(word, env, escape, process_quotes)
    try:
        return lexer.process_stop_on(None, False)
    except _LexError as exc:
        # json.dumps stands in for Go's %q: the word quoted, with control characters escaped.
        raise InvalidArgument(f"failed to process {json.dumps(word, ensure_ascii=False)}: {exc}") from None


def expand(
    word: str,
    env: Mapping[str, str],
    *,
    escape: str = DEFAULT_ESCAPE,
    process_quotes: bool = True,
) -> str:
    """Substitute variables in one word and remove its quotes and escapes ("ProcessWord").

    ``env`` maps names to values; a name that is absent is *unset* (which ``${VAR-x}`` and
    ``${VAR?}`` distinguish from empty).  Whitespace in the result is kept as it is: this is
    the form for single-value instructions (WORKDIR, USER, ENV/LABEL keys and values, each
    COPY source).

    ``process_quotes=False`` treats quotes as ordinary characters (escapes still work): BuildKit
    expands COPY/ADD heredoc bodies that way, so a ``"`` in a file body survives.

    Raises InvalidArgument (``failed to process "...": ...``) for a bad substitution, an
    unterminated quote, or a ``${VAR?msg}`` whose variable is unset.
    """
    return _run(word, env, escape, process_quotes)[0]


def expand_words(
    text: str,
    env: Mapping[str, str],
    *,
    escape: str = DEFAULT_ESCAPE,
    process_quotes: bool = True,
) -> list[str]:
    """Substitute variables, then split into words ("ProcessWords").

    For values that are a word list after expansion (EXPOSE ``$PORTS``): splitting happens on
    unquoted whitespace, including whitespace that came out of an unquoted ``$VAR``.  Empty
    words are dropped, so ``""`` yields ``[]``.  Errors as :func:`expand`.
    """
    return _run(text, env, escape, process_quotes)[1]
