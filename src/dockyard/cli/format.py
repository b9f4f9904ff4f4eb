"""``--format``: Go text/template as the docker CLI uses it, and its aligned tables.

Users bring years of Docker format strings (``{{.ID}}``, ``table {{.Repository}}\\t{{.Tag}}``,
``{{json .Config.Labels}}``), so this renders them as Go does rather than inventing a syntax:

* the template language: text, ``{{pipeline}}``, ``{{- -}}`` trimming, comments, ``if``/
  ``else if``/``range``/``with``/``else``/``end``, ``break``/``continue``, variables
  (``$x := …``, ``$i, $e := range …``, ``$``), pipes, parenthesised pipelines, literals;
* Go's builtins (``and or not len index slice print printf println eq ne lt le gt ge html js
  urlquery call``) plus the docker CLI's (``json split join title lower upper pad truncate``);
* Go's printing: ``<no value>`` for a missing map key, ``<nil>`` for None, ``[a b]`` for lists,
  ``map[k:v]`` for dicts, ``1e+06`` for floats;
* the CLI's conventions (``cli/command/formatter``): a format starting with ``table`` gets a
  header row and is aligned by Go's tabwriter configured ``(minwidth 10, tabwidth 1,
  padding 3, ' ', 0)``; ``json`` means ``{{json .}}``; the two characters ``\\t`` and ``\\n``
  become a tab and a newline (only there — ``inspect -f`` leaves them alone, as Docker does).

Not supported: ``define``/``template``/``block`` (no docker ``--format`` needs them) and
Go's complex numbers.

Fields are looked up by key on mappings (Go map semantics) and by attribute on objects; an
attribute ``CreatedSince`` falls back to ``created_since`` so dataclasses can serve as rows,
and callables are called (Go methods).  Names starting with ``_`` are never reachable.
Errors raise InvalidArgument with Docker's text: ``template parsing error: template: :1: …``.
"""

from __future__ import annotations

import dataclasses
import html as _html
import inspect
import json
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from dockyard.errors import InvalidArgument

__all__ = ["NO_VALUE", "Template", "format_rows", "parse_template", "render", "render_table", "tabwrite"]


_T = TypeVar("_T")


class _NoValue:
    """Go's invalid reflect.Value: what a missing map key evaluates to."""

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE: Any = _NoValue()
_SPACE = " \t\r\n"
_KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"}


class TemplateError(Exception):
    """Internal: a Go-worded template error, turned into InvalidArgument at the API edge."""


# --------------------------------------------------------------------------------------- lexer


def _lex(src: str) -> list[tuple[str, Any, int]]:
    """Split ``src`` into tokens: ('text', s, pos), ('{{', None, pos), …, ('}}', None, pos)."""
    toks: list[tuple[str, Any, int]] = []
    i, n, trim_next = 0, len(src), False
    while i <= n:
        j = src.find("{{", i)
        text = src[i:] if j < 0 else src[i:j]
        if trim_next:
            text = text.lstrip(_SPACE)
        if j < 0:
            if text:
                toks.append(("text", text, i))
            break
        k = j + 2
        if src.startswith("-", k) and k + 1 < n and src[k + 1] in _SPACE:
            text, k = text.rstrip(_SPACE), k + 2
        if text:
            toks.append(("text", text, i))
        try:
            i, trim_next = _lex_action(src, k, j, toks)
        except TemplateError as exc:
            # Go's parser pulls tokens lazily, so an earlier syntax error wins over this one.
            toks.append(("error", str(exc), j))
            break
    return toks


def _right_delim(src: str, k: int) -> tuple[int, bool] | None:
    """If a right delimiter starts at ``k``, return (end, trims)."""
    if src.startswith("}}", k):
        return k + 2, False
    if k + 1 < len(src) and src[k] in _SPACE and src.startswith("-}}", k + 1):
        return k + 4, True
    return None


def _lex_action(src: str, k: int, start: int, toks: list[tuple[str, Any, int]]) -> tuple[int, bool]:
    n = len(src)
    if src.startswith("/*", k):
        end = src.find("*/", k + 2)
        if end < 0:
            raise TemplateError(f"template: :{_line(src, start)}: unclosed comment")
        rd = _right_delim(src, end + 2)
        if rd is None:
            raise TemplateError(f"template: :{_line(src, start)}: comment ends before closing delimiter")
        return rd
    toks.append(("{{", None, start))
    depth = 0
    while True:
        if k >= n:
            raise TemplateError(f"template: :{_line(src, start)}: unclosed action")
        rd = _right_delim(src, k)
        if rd is not None:
            if depth:
                raise TemplateError(f"template: :{_line(src, k)}: unclosed left paren")
            toks.append(("}}", None, k))
            return rd
        c = src[k]
        if c in _SPACE:
            e = k
            while e < n and src[e] in _SPACE:
                e += 1
            if e - k > 1 and src.startswith("-}}", e):
                e -= 1  # leave one space for the " -}}" trim marker
            toks.append(("space", None, k))
            k = e
            continue
        if c == '"':
            e = k + 1
            while e < n and src[e] != '"':
                if src[e] == "\\":
                    e += 1
                if e >= n or src[e] == "\n":
                    raise TemplateError(f"template: :{_line(src, k)}: unterminated quoted string")
                e += 1
            if e >= n:
                raise TemplateError(f"template: :{_line(src, k)}: unterminated quoted string")
            toks.append(("string", _unquote(src[k + 1 : e], src, k), k))
            k = e + 1
        elif c == "`":
            e = src.find("`", k + 1)
            if e < 0:
                raise TemplateError(f"template: :{_line(src, k)}: unterminated raw quoted string")
            toks.append(("string", src[k + 1 : e], k))
            k = e + 1
        elif c == "'":
            m = re.compile(r"'(\\.[^']*|[^'\\])'").match(src, k)
            if m is None:
                raise TemplateError(f"template: :{_line(src, k)}: unterminated character constant")
            toks.append(("number", ord(_unquote(m.group(1), src, k)), k))
            k = m.end()
        elif c == "$":
            m = re.compile(r"\$\w*").match(src, k)
            assert m is not None
            toks.append(("var", m.group(), k))
            k = m.end()
        elif c == "." and k + 1 < n and (src[k + 1].isalpha() or src[k + 1] == "_"):
            m = re.compile(r"\.(\w+)").match(src, k)
            assert m is not None
            toks.append(("field", m.group(1), k))
            k = m.end()
        elif c.isdigit() or (c in "+-." and k + 1 < n and src[k + 1].isdigit()):
            m = _NUMBER.match(src, k)
            if m is None:
                raise TemplateError(f"template: :{_line(src, k)}: bad number syntax")
            toks.append(("number", _number(m.group(), src, k), k))
            k = m.end()
        elif c == ".":
            toks.append(("dot", None, k))
            k += 1
        elif c.isalpha() or c == "_":
            m = re.compile(r"\w+").match(src, k)
            assert m is not None
            word = m.group()
            kind = "keyword" if word in _KEYWORDS else "bool" if word in ("true", "false") else "ident"
            kind = "nil" if word == "nil" else kind
            toks.append((kind, word == "true" if kind == "bool" else word, k))
            k = m.end()
        elif src.startswith(":=", k):
            toks.append(("declare", None, k))
            k += 2
        elif c in "()|=,":
            depth += 1 if c == "(" else -1 if c == ")" else 0
            if depth < 0:
                raise TemplateError(f"template: :{_line(src, k)}: unexpected right paren")
            toks.append((c, None, k))
            k += 1
        elif c.isascii() and c.isprintable():
            toks.append(("char", c, k))  # Go lexes it; the parser reports it in context
            k += 1
        else:
            raise TemplateError(
                f"template: :{_line(src, k)}: unrecognized character in action: U+{ord(c):04X} '{c}'"
            )


_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?)"
)


def _number(text: str, src: str, pos: int) -> int | float:
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise TemplateError(f"template: :{_line(src, pos)}: bad number syntax: {text!r}") from None
    return int(value) if value.is_integer() and not re.search(r"[.eE]", text) else value


_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


def _unquote(body: str, src: str, pos: int) -> str:
    """Decode a Go interpreted string literal's escapes (strconv.Unquote)."""

    def sub(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] in _ESCAPES:
            return _ESCAPES[e[0]]
        if e[0] in "xuU":
            return chr(int(e[1:], 16))
        return chr(int(e, 8))

    try:
        return re.sub(
            r"\\([abfnrtv\\\"']|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3})", sub, body
        )
    except ValueError:
        raise TemplateError(f"template: :{_line(src, pos)}: invalid syntax") from None


def _line(src: str, pos: int) -> int:
    return src.count("\n", 0, pos) + 1


# -------------------------------------------------------------------------------------- parser
# Nodes are tuples: ("text", s) ("action", pipe) ("if"|"range"|"with", pipe, body, else_body)
# ("break",) ("continue",).  A pipe is (decls, is_assign, cmds, pos, end); a command is a list
# of operands; an operand is (kind, value, chain, pos, end) with kind in field/var/dot/ident/
# pipe/string/number/bool/nil and chain the trailing .Field names.


class _Parser:
    def __init__(self, src: str, funcs: Mapping[str, Any]) -> None:
        self.src, self.funcs = src, funcs
        self.toks = _lex(src)
        self.i = 0
        self.vars: list[str] = ["$"]
        self.range_depth = 0

    def error(self, msg: str, pos: int) -> TemplateError:
        return TemplateError(f"template: :{_line(self.src, pos)}: {msg}")

    def peek(self, skip_space: bool = True) -> tuple[str, Any, int]:
        while skip_space and self.i < len(self.toks) and self.toks[self.i][0] == "space":
            self.i += 1
        tok = self.toks[self.i] if self.i < len(self.toks) else ("eof", None, len(self.src))
        if tok[0] == "error":
            raise TemplateError(tok[1])
        return tok

    def next(self, skip_space: bool = True) -> tuple[str, Any, int]:
        tok = self.peek(skip_space)
        self.i += 1
        return tok

    def parse(self) -> list[tuple[Any, ...]]:
        nodes, stop = self.parse_list()
        if stop is not None:
            raise self.error(f"unexpected {{{{{stop[0]}}}}}", stop[1])
        return nodes

    def parse_list(self) -> tuple[list[tuple[Any, ...]], tuple[str, int] | None]:
        """Parse until EOF (returns None) or an end/else action (returns (word, pos))."""
        nodes: list[tuple[Any, ...]] = []
        while True:
            kind, value, pos = self.next(skip_space=False)
            if kind == "eof":
                return nodes, None
            if kind == "text":
                nodes.append(("text", value))
                continue
            kind, value, pos = self.peek()
            if kind == "keyword":
                self.i += 1
                if value in ("end", "else"):
                    return nodes, (value, pos)
                nodes.append(self.parse_keyword(value, pos))
            else:
                pipe = self.parse_pipeline(decl_ok=True)
                self.expect_close(pos)
                nodes.append(("action", pipe))

    def expect_close(self, pos: int) -> None:
        kind, value, p = self.next()
        if kind != "}}":
            raise self.error(f"unexpected {_describe(kind, value)} in command", p)

    def parse_keyword(self, word: str, pos: int) -> tuple[Any, ...]:
        if word in ("break", "continue"):
            if not self.range_depth:
                raise self.error(f"{{{{{word}}}}} outside {{{{range}}}}", pos)
            self.expect_close(pos)
            return (word,)
        if word not in ("if", "range", "with"):
            raise self.error(f"{{{{{word}}}}} is not supported", pos)
        mark = len(self.vars)
        pipe = self.parse_pipeline(decl_ok=True, is_range=word == "range")
        self.expect_close(pos)
        self.range_depth += word == "range"
        body, stop = self.parse_list()
        self.range_depth -= word == "range"
        else_body: list[tuple[Any, ...]] = []
        if stop is None:
            raise self.error("unexpected EOF", len(self.src))
        if stop[0] == "else":
            kind, value, p = self.peek()
            if kind == "keyword" and value == word and word in ("if", "with"):
                # {{else if …}} / {{else with …}}: a nested block that shares our {{end}}.
                self.i += 1
                else_body = [self.parse_keyword(value, p)]
                del self.vars[mark:]
                return (word, pipe, body, else_body)
            self.expect_close(stop[1])
            else_body, stop = self.parse_list()
            if stop is None:
                raise self.error("unexpected EOF", len(self.src))
            if stop[0] != "end":
                raise self.error("expected end; found {{else}}", stop[1])
        self.expect_close(stop[1])
        del self.vars[mark:]
        return (word, pipe, body, else_body)

    def parse_pipeline(self, decl_ok: bool = False, is_range: bool = False) -> tuple[Any, ...]:
        start = self.peek()[2]
        decls: list[str] = []
        is_assign = False
        if decl_ok and self.peek()[0] == "var":
            save = self.i
            names = [self.next()[1]]
            if is_range and self.peek()[0] == ",":
                self.i += 1
                kind, value, p = self.next()
                if kind != "var":
                    raise self.error("range can only initialize variables", p)
                names.append(value)
            kind = self.peek()[0]
            if kind in ("declare", "="):
                self.i += 1
                is_assign = kind == "="
                for name in names:
                    if is_assign and name not in self.vars:
                        raise self.error(f'undefined variable "{name}"', start)
                decls = names
            else:
                self.i = save
        cmds: list[list[tuple[Any, ...]]] = []
        while True:
            cmds.append(self.parse_command())
            if self.peek()[0] != "|":
                break
            self.i += 1
        if not is_assign:
            self.vars.extend(decls)
        end = self.peek()[2]
        return (decls, is_assign, cmds, start, end)

    def parse_command(self) -> list[tuple[Any, ...]]:
        args: list[tuple[Any, ...]] = []
        while True:
            kind = self.peek()[0]
            if kind in ("}}", "|", ")", "eof"):
                break
            if kind == "char" and not args:
                raise self.error(f"unexpected {_describe(kind, self.peek()[1])} in command", self.peek()[2])
            args.append(self.parse_operand())
            nxt = self.peek(skip_space=False)[0]
            if nxt not in ("space", "}}", "|", ")"):
                raise self.error(
                    f"unexpected {_describe(nxt, self.peek(False)[1])} in operand", self.peek(False)[2]
                )
        if not args:
            raise self.error("missing value for command", self.peek()[2])
        return args

    def parse_operand(self) -> tuple[Any, ...]:
        kind, value, pos = self.next()
        if kind == "field":
            chain = [value]
            kind, value = "field", None
        else:
            chain = []
        if kind == "(":
            value = self.parse_pipeline()
            if self.next()[0] != ")":
                raise self.error("unclosed left paren", pos)
            kind = "pipe"
        elif kind == "var":
            if value not in self.vars:
                raise self.error(f'undefined variable "{value}"', pos)
        elif kind == "ident":
            if value not in self.funcs:
                raise self.error(f'function "{value}" not defined', pos)
        elif kind not in ("field", "dot", "string", "number", "bool", "nil"):
            raise self.error(f"unexpected {_describe(kind, value)} in operand", pos)
        if kind not in ("field", "var", "pipe") and self.peek(skip_space=False)[0] == "field":
            raise self.error(f"unexpected . after term {_describe(kind, value)}", pos)
        while self.peek(skip_space=False)[0] == "field":
            chain.append(self.next(skip_space=False)[1])
        return (kind, value, tuple(chain), pos, self.peek(skip_space=False)[2])


def _describe(kind: str, value: Any) -> str:
    if kind == "char":
        return f'"{value}"'
    if kind in ("}}", "{{", "(", ")", "|", ",", "=", "declare"):
        return '"' + {"declare": ":=", "}}": "}}", "{{": "{{"}.get(kind, kind) + '"'
    if kind == "eof":
        return "EOF"
    return f"<{value}>" if value is not None else kind


# ---------------------------------------------------------------------------------- evaluation


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _ExecError(Exception):
    def __init__(self, msg: str, pos: int | None = None, end: int | None = None) -> None:
        super().__init__(msg)
        self.msg, self.pos, self.end = msg, pos, end


class Template:
    """A parsed template; :meth:`execute` may be called many times (once per row)."""

    def __init__(
        self, src: str, funcs: Mapping[str, Any] | None = None, missing_key: str = "default"
    ) -> None:
        if missing_key not in ("default", "error"):
            raise InvalidArgument(f"unrecognized missingkey option {missing_key!r}")
        self.src = src
        self.funcs = dict(_BUILTINS)
        self.funcs.update(_DOCKER_FUNCS)
        self.funcs.update(funcs or {})
        self.missing_key = missing_key
        try:
            self.tree = _Parser(src, self.funcs).parse()
        except TemplateError as exc:
            raise InvalidArgument(f"template parsing error: {exc}") from None

    def execute(self, data: Any, *, funcs: Mapping[str, Any] | None = None) -> str:
        """Render with ``data`` as ``.``; ``funcs`` overrides functions for this run."""
        out: list[str] = []
        run = _Run(self, out, {**self.funcs, **(funcs or {})})
        try:
            run.walk(self.tree, data, [("$", data)])
        except _ExecError as exc:
            at = ""
            if exc.pos is not None:
                line = _line(self.src, exc.pos)
                col = exc.pos - (self.src.rfind("\n", 0, exc.pos) + 1)
                at = f':{line}:{col}: executing "" at <{self.src[exc.pos : exc.end].strip()}>'
            raise InvalidArgument(f"template parsing error: template: {at}: {exc.msg}") from None
        return "".join(out)


class _Run:
    def __init__(self, tmpl: Template, out: list[str], funcs: Mapping[str, Any]) -> None:
        self.tmpl, self.out, self.funcs = tmpl, out, funcs

    def walk(self, nodes: list[tuple[Any, ...]], dot: Any, scope: list[tuple[str, Any]]) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                self.out.append(node[1])
            elif kind == "action":
                value = self.pipeline(node[1], dot, scope)
                if not node[1][0]:
                    self.out.append(_print(value))
            elif kind == "break":
                raise _Break
            elif kind == "continue":
                raise _Continue
            else:
                self.block(node, dot, scope)

    def block(self, node: tuple[Any, ...], dot: Any, scope: list[tuple[str, Any]]) -> None:
        kind, pipe, body, else_body = node
        mark = len(scope)
        try:
            if kind == "range":
                self.range(pipe, body, else_body, dot, scope)
                return
            value = self.pipeline(pipe, dot, scope)
            if truth(value):
                self.walk(body, value if kind == "with" else dot, scope)
            else:
                self.walk(else_body, dot, scope)
        finally:
            del scope[mark:]

    def range(
        self,
        pipe: tuple[Any, ...],
        body: list[Any],
        else_body: list[Any],
        dot: Any,
        scope: list[tuple[str, Any]],
    ) -> None:
        decls = pipe[0]
        value = self.pipeline((), dot, scope, pipe)
        if value is NO_VALUE or value is None:
            items: list[tuple[Any, Any]] = []
        elif isinstance(value, Mapping):
            items = [(k, value[k]) for k in _sorted_keys(value)]
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        elif isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise _ExecError(f"range can't iterate over {_print(value)}", pipe[3], pipe[4])
        else:
            items = list(enumerate(value))
        if not items:
            self.walk(else_body, dot, scope)
            return
        mark = len(scope)
        for key, elem in items:
            del scope[mark:]
            if len(decls) == 1:
                scope.append((decls[0], elem))
            elif len(decls) == 2:
                scope.extend([(decls[0], key), (decls[1], elem)])
            try:
                self.walk(body, elem, scope)
            except _Break:
                break
            except _Continue:
                continue

    def pipeline(
        self,
        pipe: tuple[Any, ...],
        dot: Any,
        scope: list[tuple[str, Any]],
        range_pipe: tuple[Any, ...] | None = None,
    ) -> Any:
        decls, is_assign, cmds, _, _ = range_pipe or pipe
        value: Any = _UNSET
        for cmd in cmds:
            value = self.command(cmd, dot, scope, value)
        if range_pipe is not None:
            return value
        for name in decls:
            if is_assign:
                for idx in range(len(scope) - 1, -1, -1):
                    if scope[idx][0] == name:
                        scope[idx] = (name, value)
                        break
            else:
                scope.append((name, value))
        return value

    def command(self, cmd: list[tuple[Any, ...]], dot: Any, scope: list[tuple[str, Any]], final: Any) -> Any:
        try:
            return self._command(cmd, dot, scope, final)
        except _ExecError as exc:
            if exc.pos is None:  # raised by a function: Go reports the whole command
                exc.pos, exc.end = cmd[0][3], cmd[-1][4]
            raise

    def _command(self, cmd: list[tuple[Any, ...]], dot: Any, scope: list[tuple[str, Any]], final: Any) -> Any:
        first = cmd[0]
        kind, value, chain, pos, end = first
        cmd_end = cmd[-1][4]
        if kind == "ident":
            if value in ("and", "or"):
                return self.and_or(value, cmd[1:], dot, scope, final)
            args = [self.operand(a, dot, scope) for a in cmd[1:]]
            if final is not _UNSET:
                args.append(final)
            return _invoke(value, self.funcs[value], args)
        if kind in ("field", "var", "dot", "pipe") and chain:
            receiver = self.term(first, dot, scope, with_chain=False)
            args = [self.operand(a, dot, scope) for a in cmd[1:]]
            if final is not _UNSET:
                args.append(final)
            return self.field_chain(receiver, chain, args, pos, cmd_end)
        if len(cmd) > 1 or final is not _UNSET:
            raise _ExecError(
                f"can't give argument to non-function {self.tmpl.src[pos:end].strip()}", pos, end
            )
        if kind == "nil":
            raise _ExecError("nil is not a command", pos, end)
        return self.term(first, dot, scope)

    def and_or(self, name: str, ops: list[Any], dot: Any, scope: list[Any], final: Any) -> Any:
        values: Iterator[Any] = (self.operand(a, dot, scope) for a in ops)
        if final is not _UNSET:
            values = iter([*values, final])
        result: Any = _UNSET
        for result in values:
            if truth(result) == (name == "or"):
                return result
        if result is _UNSET:
            raise _ExecError(f"wrong number of args for {name}: want at least 1 got 0")
        return result

    def operand(self, op: tuple[Any, ...], dot: Any, scope: list[tuple[str, Any]]) -> Any:
        if op[0] == "nil":
            return None
        return self.term(op, dot, scope)

    def term(
        self, op: tuple[Any, ...], dot: Any, scope: list[tuple[str, Any]], with_chain: bool = True
    ) -> Any:
        kind, value, chain, pos, end = op
        if kind in ("string", "number", "bool"):
            return value
        if kind == "ident":
            return _invoke(value, self.funcs[value], [])
        if kind == "dot" or kind == "field":
            base = dot
        elif kind == "var":
            base = next(v for n, v in reversed(scope) if n == value)
        else:
            base = self.pipeline(value, dot, scope)
        return self.field_chain(base, chain, [], pos, end) if with_chain and chain else base

    def field_chain(self, receiver: Any, chain: tuple[str, ...], args: list[Any], pos: int, end: int) -> Any:
        for i, name in enumerate(chain):
            last = i == len(chain) - 1
            receiver = self.field(receiver, name, args if last else [], pos, end)
        return receiver

    def field(self, receiver: Any, name: str, args: list[Any], pos: int, end: int) -> Any:
        missing_error = self.tmpl.missing_key == "error"
        if receiver is NO_VALUE:
            if missing_error:
                raise _ExecError(f'nil data; no entry for key "{name}"', pos, end)
            return NO_VALUE
        if receiver is None:
            raise _ExecError(f"nil pointer evaluating interface {{}}.{name}", pos, end)
        if isinstance(receiver, Mapping):
            if args:
                raise _ExecError(f"{name} is not a method but has arguments", pos, end)
            if name in receiver:
                return receiver[name]
            if missing_error:
                raise _ExecError(f'map has no entry for key "{name}"', pos, end)
            return NO_VALUE
        attr = _attribute(receiver, name)
        if attr is _UNSET:
            raise _ExecError(f"can't evaluate field {name} in type {_go_type(receiver)}", pos, end)
        if callable(attr) and not isinstance(attr, type):
            return _invoke(name, attr, args)
        if args:
            raise _ExecError(f"{name} has arguments but cannot be invoked as function", pos, end)
        return attr


_UNSET: Any = object()


def _invoke(name: str, fn: Callable[..., Any], args: list[Any]) -> Any:
    """Call a template function or method with Go's arity check and error wording."""
    try:
        inspect.signature(fn).bind(*args)
    except TypeError:
        want = _arity(fn)
        raise _ExecError(f"wrong number of args for {name}: want {want} got {len(args)}") from None
    except ValueError:  # no signature available (some builtins): let the call decide
        pass
    try:
        return fn(*args)
    except _ExecError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, AttributeError) as exc:
        raise _ExecError(f"error calling {name}: {exc}") from None


def _arity(fn: Callable[..., Any]) -> str:
    params = inspect.signature(fn).parameters.values()
    fixed = sum(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in params
    )
    variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
    return f"at least {fixed}" if variadic else str(fixed)


# Go cannot reach fields of basic values; neither can we (no str.upper via {{.Upper}}).
_OPAQUE = (str, bytes, int, float, bool, list, tuple, set, frozenset)


def _attribute(obj: Any, name: str) -> Any:
    """Go field/method lookup on a Python object; ``_private`` names are never exposed.

    Every public attribute of a row is reachable and every public method callable, exactly as
    Go templates reach exported fields and methods: rows must be display objects, never
    objects with side-effecting methods (a format string could call ``.Remove``).
    """
    if name.startswith("_") or isinstance(obj, _OPAQUE):
        return _UNSET
    for candidate in (name, _snake(name)):
        if not candidate.startswith("_") and hasattr(obj, candidate):
            return getattr(obj, candidate)
    return _UNSET


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def truth(value: Any) -> bool:
    """Go template truth: false, 0, nil, and empty strings/lists/maps are false."""
    if value is NO_VALUE or value is None:
        return False
    if isinstance(value, (bool, int, float, str, bytes, list, tuple, Mapping, set, frozenset)):
        return bool(value)
    return True


def _sorted_keys(m: Mapping[Any, Any]) -> list[Any]:
    try:
        return sorted(m)
    except TypeError:
        return sorted(m, key=str)


def _go_type(value: Any) -> str:
    if value is None or value is NO_VALUE:
        return "<nil>"
    for typ, name in ((bool, "bool"), (int, "int"), (float, "float64"), (str, "string")):
        if isinstance(value, typ):
            return name
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    return type(value).__name__


# ------------------------------------------------------------------------------ Go's printing


def _digits(f: float) -> tuple[bool, str, int]:
    """Shortest round-trip digits of a finite nonzero float: (negative, digits, point)."""
    sign, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    ds = "".join(map(str, digits))
    return bool(sign), ds, len(ds) + int(exp)


def _fixed(ds: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + ds
    if point >= len(ds):
        return ds + "0" * (point - len(ds))
    return ds[:point] + "." + ds[point:]


def _exp_form(f: float) -> str:
    neg, ds, point = _digits(f)
    x = point - 1
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{'-' if neg else ''}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"


def go_float(f: float) -> str:
    """``%v`` of a float64 (strconv 'g', shortest): exponent form below 1e-4 and from 1e+06."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    neg, ds, point = _digits(f)
    if not -4 <= point - 1 < 6:
        return _exp_form(f)
    return ("-" if neg else "") + _fixed(ds, point)


def _print(value: Any) -> str:
    """Go's fmt ``%v`` as text/template prints a value."""
    if value is NO_VALUE:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, (str, int)):
        return str(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{_print(k)}:{_print(value[k])}" for k in _sorted_keys(value)) + "]"
    if isinstance(value, (list, tuple, bytes, set, frozenset)):
        return "[" + " ".join(_print(v) for v in value) + "]"
    if getattr(type(value), "__str__", None) is not object.__str__ and not isinstance(value, Exception):
        return str(value)
    if dataclasses.is_dataclass(value):
        return "{" + " ".join(_print(getattr(value, f.name)) for f in dataclasses.fields(value)) + "}"
    return str(value)


def go_json(value: Any) -> str:
    """Go's ``json.Marshal`` without HTML escaping, as the CLI's ``json`` function writes it.

    Mappings get sorted keys (Go maps); objects with ``to_dict`` keep that order (Go structs);
    dataclasses use their public fields in order.  Go cannot encode NaN or infinities: the CLI
    then prints nothing, and so do we.
    """
    try:
        return _encode(_jsonable(value))
    except ValueError:
        return ""


def _encode(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _json_float(v)
    if isinstance(v, str):
        text = json.dumps(v, ensure_ascii=False)
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if isinstance(v, list):
        return "[" + ",".join(_encode(x) for x in v) + "]"
    return "{" + ",".join(_encode(str(k)) + ":" + _encode(x) for k, x in v.items()) + "}"


def _json_float(f: float) -> str:
    """encoding/json's float64: shortest digits, exponent form below 1e-6 and from 1e21."""
    if math.isnan(f) or math.isinf(f):
        raise ValueError("unsupported value")
    if f == 0 or 1e-6 <= abs(f) < 1e21:
        neg, ds, point = _digits(f)
        return ("-" if neg else "") + _fixed(ds, point)
    return _exp_form(f).replace("e-0", "e-")


def _jsonable(value: Any) -> Any:
    """Plain JSON values in Go's key order (see :func:`go_json`)."""
    if value is NO_VALUE or value is None or isinstance(value, (bool, int, float, str)):
        return None if value is NO_VALUE else value
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return _jsonable_ordered(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(value[k]) for k in _sorted_keys(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return str(value)


def _jsonable_ordered(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable_ordered(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable_ordered(v) for v in value]
    return _jsonable(value)


# ------------------------------------------------------------------------------------ printf


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+)?)?([a-zA-Z%])")


def go_sprintf(fmt: str, *args: Any) -> str:
    """Go's ``fmt.Sprintf`` for the verbs templates use (v s d q x X o b c e E f F g G t T %)."""
    out: list[str] = []
    argi = 0
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if width == "*" or prec == "*":
            star = []
            for part in (width, prec):
                if part == "*":
                    star.append(args[argi] if argi < len(args) else 0)
                    argi += 1
            width = str(star.pop(0)) if width == "*" else width
            prec = str(star.pop(0)) if prec == "*" else prec
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_format_one(flags, int(width) if width else None, prec, verb, arg))
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{_go_type(a)}={_print(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format_one(flags: str, width: int | None, prec: str | None, verb: str, arg: Any) -> str:
    p = int(prec) if prec else (0 if prec == "" else None)
    is_int = isinstance(arg, int) and not isinstance(arg, bool)
    bad = f"%!{verb}(<nil>)" if arg is None or arg is NO_VALUE else f"%!{verb}({_go_type(arg)}={_print(arg)})"
    if verb == "v":
        text = _print(arg)
    elif verb == "T":
        text = _go_type(arg)
    elif verb == "s":
        if isinstance(arg, (str, list, tuple, Mapping)) or (
            not is_int and not isinstance(arg, (bool, float)) and arg is not None
        ):
            text = _print(arg)
            text = text[:p] if p is not None else text
        else:
            return bad
    elif verb == "q":
        if isinstance(arg, str):
            text = json.dumps(arg, ensure_ascii=False)
        elif is_int:
            text = "'" + chr(arg) + "'"
        else:
            return bad
    elif verb == "t":
        if not isinstance(arg, bool):
            return bad
        text = _print(arg)
    elif verb in "dboxXc":
        if verb in "xX" and isinstance(arg, str):
            text = arg.encode().hex()
            text = text.upper() if verb == "X" else text
        elif not is_int:
            return bad
        elif verb == "c":
            text = chr(arg)
        else:
            base = {"d": "d", "b": "b", "o": "o", "x": "x", "X": "X"}[verb]
            text = format(abs(arg), base)
            if p is not None:
                text = text.rjust(p, "0")
            if "#" in flags and verb in "xX":
                text = ("0x" if verb == "x" else "0X") + text
            sign = "-" if arg < 0 else "+" if "+" in flags else " " if " " in flags else ""
            if "0" in flags and "-" not in flags and width and p is None:
                text = text.rjust(width - len(sign), "0")
            text = sign + text
    elif verb in "eEfFgG":
        if not isinstance(arg, float):
            return bad
        if verb in "gG" and p is None:
            text = go_float(arg) if verb == "g" else go_float(arg).upper()
        else:
            text = format(arg, f"{'+' if '+' in flags else ''}.{6 if p is None else p}{verb}")
            if verb in "eE":
                text = re.sub(r"([eE][+-])(\d)$", r"\g<1>0\2", text)
        if "0" in flags and "-" not in flags and width:
            sign = text[0] if text[0] in "+-" else ""
            text = sign + text[len(sign) :].rjust(width - len(sign), "0")
    else:
        return bad
    if width and len(text) < width:
        text = text.ljust(width) if "-" in flags else text.rjust(width)
    return text


def _go_sprint(*args: Any) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    out = ""
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out += " "
        out += _print(a)
    return out


# ---------------------------------------------------------------------------------- functions


def _need(kind: type[_T], value: Any, expected: str) -> _T:
    """Go's argument conversion: a template function gets exactly the type it declares."""
    if value is NO_VALUE:
        raise _ExecError(f"invalid value; expected {expected}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _ExecError(f"wrong type for value; expected {expected}; got {_go_type(value)}")
    return value


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if item is None or item is NO_VALUE:
            raise ValueError("index of untyped nil")
        if isinstance(item, Mapping):
            if key in item:
                item = item[key]
            else:  # Go returns the element type's zero value
                item = "" if all(isinstance(v, str) for v in item.values()) else NO_VALUE
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TypeError(f"cannot index slice/array with type {_go_type(key)}")
            if not 0 <= key < len(item):
                raise ValueError(f"index out of range: {key}")
            item = ord(item[key]) if isinstance(item, str) else item[key]
        else:
            raise TypeError(f"can't index item of type {_go_type(item)}")
    return item


def _slice(item: Any, *idx: Any) -> Any:
    if not isinstance(item, (list, tuple, str)):
        raise TypeError(f"can't slice item of type {_go_type(item)}")
    bounds = [_need(int, i, "int") for i in idx]
    if len(bounds) > 3 or (len(bounds) == 3 and isinstance(item, str)):
        raise ValueError("too many slice indexes")
    lo = bounds[0] if bounds else 0
    hi = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= lo <= hi <= len(item):
        raise ValueError(f"index out of range: {hi if hi > len(item) else lo}")
    return item[lo:hi]


def _len(item: Any) -> int:
    if isinstance(item, (str, list, tuple, Mapping, bytes, set, frozenset)):
        return len(item)
    raise TypeError(f"len of type {_go_type(item)}")


def _basic(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if value is None or value is NO_VALUE:
        return "nil"
    return "other"


def _eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise ValueError("missing argument for comparison")
    for b in bs:
        ka, kb = _basic(a), _basic(b)
        if ka != kb and "nil" not in (ka, kb):
            raise TypeError("incompatible types for comparison")
        if (None if a is NO_VALUE else a) == (None if b is NO_VALUE else b):
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _basic(a), _basic(b)
    if ka not in ("int", "float", "string"):
        raise TypeError("invalid type for comparison")
    if ka != kb:
        raise TypeError("incompatible types for comparison")
    return bool(a < b)


def _title(s: str) -> str:
    """strings.Title: upper-case the first letter of each word (Go's separator rules)."""

    def is_sep(c: str) -> bool:
        if c.isascii():
            return not (c.isalnum() or c == "_")
        return c.isspace()

    out, prev = [], " "
    for c in s:
        out.append(c.upper() if is_sep(prev) else c)
        prev = c
    return "".join(out)


def _split(s: Any, sep: Any) -> list[str]:
    s, sep = _need(str, s, "string"), _need(str, sep, "string")
    return list(s) if sep == "" else s.split(sep)


def _join(items: Any, sep: Any) -> str:
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise _ExecError(f"wrong type for value; expected []string; got {_go_type(items)}")
    return _need(str, sep, "string").join(items)


def _pad(source: Any, prefix: Any, suffix: Any) -> str:
    s = _need(str, source, "string")
    return s if s == "" else " " * _need(int, prefix, "int") + s + " " * _need(int, suffix, "int")


def _truncate(source: Any, length: Any) -> str:
    s, n = _need(str, source, "string"), _need(int, length, "int")
    return s if len(s) < n else s[:n]


def _js(*args: Any) -> str:
    s = _go_sprint(*args) if len(args) != 1 or not isinstance(args[0], str) else args[0]
    table = {
        "\\": "\\\\",
        "'": "\\'",
        '"': "\\u0022",
        "<": "\\u003C",
        ">": "\\u003E",
        "&": "\\u0026",
        "=": "\\u003D",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
    }
    return "".join(table.get(c, c) for c in s)


def _call(fn: Any, *args: Any) -> Any:
    if not callable(fn):
        raise TypeError(f"non-function of type {_go_type(fn)}")
    return fn(*args)


_BUILTINS: dict[str, Callable[..., Any]] = {
    "and": lambda *a: None,  # evaluated lazily by _Run.and_or
    "or": lambda *a: None,
    "not": lambda a: not truth(a),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _go_sprint,
    "printf": lambda f, *a: go_sprintf(_need(str, f, "string"), *a),
    "println": lambda *a: " ".join(_print(x) for x in a) + "\n",
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _lt,
    "le": lambda a, b: _lt(a, b) or _eq(a, b),
    "gt": lambda a, b: not (_lt(a, b) or _eq(a, b)),
    "ge": lambda a, b: not _lt(a, b),
    "html": lambda *a: (
        _html.escape(_go_sprint(*a), quote=True).replace("&#x27;", "&#39;").replace("&quot;", "&#34;")
    ),
    "js": _js,
    "urlquery": lambda *a: urllib.parse.quote_plus(_go_sprint(*a)),
    "call": _call,
}

_DOCKER_FUNCS: dict[str, Callable[..., Any]] = {
    "json": go_json,
    "split": _split,
    "join": _join,
    "title": lambda s: _title(_need(str, s, "string")),
    "lower": lambda s: _need(str, s, "string").lower(),
    "upper": lambda s: _need(str, s, "string").upper(),
    "pad": _pad,
    "truncate": _truncate,
}

# The CLI renders table headers with these in place of the above, so that the header cell of
# {{json .X}} or {{upper .X}} is the column title itself (templates.HeaderFunctions).
_HEADER_FUNCS: dict[str, Callable[..., Any]] = {
    name: (lambda v, *_: v) for name in ("json", "split", "join", "title", "lower", "upper", "truncate")
}


# ---------------------------------------------------------------------------------- tabwriter


def _width(text: str) -> int:
    """Display width in terminal cells (go-runewidth: wide East Asian = 2, combining = 0)."""
    w = 0
    for c in text:
        if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
            continue
        w += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return w


def tabwrite(text: str, minwidth: int = 10, tabwidth: int = 1, padding: int = 3, padchar: str = " ") -> str:
    """Align tab-terminated cells as Go's ``text/tabwriter`` (elastic tabstops) does.

    Defaults are the docker CLI's ``NewWriter(out, 10, 1, 3, ' ', 0)``.  A column is a run of
    consecutive lines that have a cell at that index; each is as wide as its widest cell plus
    ``padding`` (at least ``minwidth``); the last cell of a line is never padded.
    """
    out: list[str] = []
    for block in re.split(r"(?<=\f)", text):  # a formfeed ends all columns, like a flush
        lines: list[list[tuple[str, int, bool]]] = [[]]
        cell = ""
        for c in block:
            if c in "\t\v\n\f":
                lines[-1].append((cell, _width(cell), c == "\t"))
                cell = ""
                if c in "\n\f":
                    lines.append([])
            else:
                cell += c
        if cell:
            lines[-1].append((cell, _width(cell), False))
        _format_lines(lines, 0, len(lines), [], out, minwidth, padding, padchar)
    return "".join(out)


def _format_lines(lines: list[list[tuple[str, int, bool]]], line0: int, line1: int, widths: list[int],
                  out: list[str], minwidth: int, padding: int, padchar: str) -> None:  # fmt: skip
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        _write_lines(lines, line0, this, widths, out, padchar)
        line0 = this
        width = minwidth
        while this < line1 and column < len(lines[this]) - 1:
            width = max(width, lines[this][column][1] + padding)
            this += 1
        _format_lines(lines, line0, this, [*widths, width], out, minwidth, padding, padchar)
        line0 = this
    _write_lines(lines, line0, line1, widths, out, padchar)


def _write_lines(lines: list[list[tuple[str, int, bool]]], line0: int, line1: int, widths: list[int],
                 out: list[str], padchar: str) -> None:  # fmt: skip
    for i in range(line0, line1):
        for j, (text, width, _) in enumerate(lines[i]):
            out.append(text)
            if j < len(widths):
                out.append(padchar * (widths[j] - width))
        if i + 1 < len(lines):
            out.append("\n")


# ------------------------------------------------------------------------------- CLI surface


def parse_template(template: str, *, missing_key: str = "default") -> Template:
    """Parse once, execute per row.  ``missing_key="error"`` is what ``docker inspect`` uses."""
    return Template(template, missing_key=missing_key)


def render(template: str, obj: Any, *, missing_key: str = "default") -> str:
    """Render a Go template against ``obj``; no ``\\t`` rewriting, no trailing newline."""
    return parse_template(template, missing_key=missing_key).execute(obj)


def _preformat(fmt: str) -> tuple[str, bool]:
    """Docker's Context.preFormat: strip ``table``, trim spaces, expand ``\\t`` and ``\\n``."""
    is_table = fmt.startswith("table")
    body = fmt[len("table") :] if is_table else "{{json .}}" if fmt == "json" else fmt
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return body, is_table


class _Header(Mapping[str, str]):
    """The header row's ``.``: every field is its column title.

    Docker passes a plain map, so a field missing from it prints ``<no value>``; we fall back
    to the upper-cased field name instead, so a forgotten title never shows Go's placeholder.
    """

    def __init__(self, titles: Mapping[str, str]) -> None:
        self.titles = titles

    def __getitem__(self, key: str) -> str:
        return self.titles.get(key, key.upper())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __iter__(self) -> Any:
        return iter(self.titles)

    def __len__(self) -> int:
        return len(self.titles)


class _HeaderRun(_Run):
    def field(self, receiver: Any, name: str, args: list[Any], pos: int, end: int) -> Any:
        if isinstance(receiver, _Header):
            return receiver[name]  # methods with arguments (.Label "x") are titles too
        if isinstance(receiver, str):
            return receiver  # {{.Config.User}}: the column keeps the title of its first field
        return super().field(receiver, name, args, pos, end)


def render_table(fmt: str, rows: Iterable[Any], headers: Mapping[str, str]) -> str:
    """Render ``rows`` as an aligned table with a header row, exactly as the docker CLI does.

    ``fmt`` may start with ``table``.  ``headers`` maps field names to titles
    (``{"ID": "IMAGE ID"}``).  An error while rendering the header keeps what was written
    before it (Go ignores that error); an error in a row raises InvalidArgument.
    """
    body, _ = _preformat(fmt if fmt.startswith("table") else "table " + fmt)
    tmpl = Template(body)
    header: list[str] = []
    run = _HeaderRun(tmpl, header, {**tmpl.funcs, **_HEADER_FUNCS})
    try:
        run.walk(tmpl.tree, _Header(headers), [("$", _Header(headers))])
    except (_ExecError, _Break, _Continue):
        pass
    text = "".join(header) + "\n" + "".join(tmpl.execute(row) + "\n" for row in rows)
    return tabwrite(text)


def format_rows(fmt: str | None, rows: Iterable[Any], default_table: str, headers: Mapping[str, str]) -> str:
    """Apply a ``--format`` value to ``rows``, following the docker CLI's rules.

    None, ``""`` or ``table`` use ``default_table``; ``table …`` renders an aligned table with
    ``headers``; ``json`` prints each row as one JSON line; anything else is a template
    rendered once per row, each followed by a newline.
    """
    if not fmt or fmt == "table":
        fmt = default_table
    body, is_table = _preformat(fmt)
    if is_table:
        return render_table(fmt, rows, headers)
    tmpl = Template(body)
    return "".join(tmpl.execute(row) + "\n" for row in rows)
