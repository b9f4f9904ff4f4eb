"""HTTP authentication challenges, credentials headers, token scopes, and the client's challenge flow.

Pure: no sockets, no files.  The registry *server* uses the builders (``bearer_challenge``,
``basic_challenge``) and the header parsers (``parse_basic_authorization``, ``parse_bearer``); the
registry *client* (remotes/) reuses ``parse_challenges`` and drives ``auth_flow``, a generator in the
style of httpx's ``_auth.py``::

    flow = auth_flow(HttpRequest("GET", url), Credentials("alice", "s3cret"))
    request = next(flow)
    while True:
        response = await send(request)              # the only I/O, done by the caller
        try:
            request = flow.send(response)
        except StopIteration as stop:
            token = stop.value                      # the Bearer token obtained, or None
            break                                   # ``response`` is the final answer

Grammar notes:

- ``WWW-Authenticate`` (RFC 7235 §4.1) holds one or more challenges, each ``scheme`` followed by
  either a token68 or comma-separated ``name=value`` params whose values are tokens or quoted
  strings; a response may also carry several ``WWW-Authenticate`` headers.  Scheme and param names
  are case-insensitive; this module lower-cases both when parsing.
- A token scope (distribution's ``scope.md``) is ``type[(class)]:name:action[,action...]``, several
  separated by spaces.  The name may itself hold one ``:`` (a registry host with a port), so the
  type ends at the first ``:`` and the actions start after the last one.  The deprecated resource
  class is dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode, urlsplit

from dockyard.errors import InvalidArgument
from dockyard.registry.auth import Access

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_WS = " \t"
_SCOPE_TYPE = re.compile(r"[a-z0-9]+(?:\([a-z0-9]+\))?")
_ACTION = re.compile(r"[a-z*]*")


# --- WWW-Authenticate -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Challenge:
    """One parsed challenge: ``scheme`` and ``params`` lower-cased names; ``token68`` if given instead."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str = ""


class _Cursor:
    """A position in a header value; the helpers return "" when nothing matches."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def match(self, pattern: re.Pattern[str]) -> str:
        m = pattern.match(self.text, self.pos)
        if not m:
            return ""
        self.pos = m.end()
        return m.group(0)

    def quoted(self) -> str:
        """A quoted-string starting at the cursor; backslash escapes the next character.  An
        unterminated string runs to the end (lenient: servers in the wild get this wrong)."""
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif c == '"':
                break
            else:
                out.append(c)
        return "".join(out)

    def at_param(self) -> bool:
        """Whether a ``name=value`` param (not a new scheme, not a token68) starts here."""
        m = _TOKEN.match(self.text, self.pos)
        if not m:
            return False
        rest = self.text[m.end():].lstrip(_WS)
        if not rest.startswith("="):
            return False
        # "abc=" or "abc==" at the end or before a comma is a token68 (an unquoted value is never
        # empty), not a param
        after = rest.lstrip("=").lstrip(_WS)
        return bool(after) and not after.startswith(",")


def parse_challenges(values: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one ``WWW-Authenticate`` value or in several (one per header line).

    Lenient by design: garbage between challenges is skipped rather than raised, because a client
    should still find the ``Bearer`` challenge it understands next to one it does not."""
    if not isinstance(values, str):
        return [c for v in values for c in parse_challenges(v)]
    cur = _Cursor(values)
    out: list[Challenge] = []
    while True:
        cur.skip(_WS + ",")
        if cur.done:
            return out
        scheme = cur.match(_TOKEN)
        if not scheme:
            cur.pos += 1                     # not a token: skip the character and resync
            continue
        params: dict[str, str] = {}
        token68 = ""
        had_space = cur.peek() in _WS
        cur.skip(_WS)
        if had_space and not cur.at_param():
            mark = cur.pos
            t68 = cur.match(_TOKEN68)
            cur.skip(_WS)
            if t68 and (cur.done or cur.peek() == ","):
                token68 = t68
            else:
                cur.pos = mark
        while not token68 and cur.at_param():
            name = cur.match(_TOKEN).lower()
            cur.skip(_WS)
            cur.pos += 1                     # the "="
            cur.skip(_WS)
            value = cur.quoted() if cur.peek() == '"' else cur.match(_TOKEN)
            params.setdefault(name, value)
            cur.skip(_WS)
            if cur.peek() != ",":
                break
            cur.skip(_WS + ",")
        out.append(Challenge(scheme.lower(), params, token68))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_challenge(scheme: str, params: Mapping[str, str]) -> str:
    """``Scheme name="value",name="value"`` — every value quoted, as distribution writes them."""
    if not params:
        return scheme
    return scheme + " " + ",".join(f"{k}={_quote(v)}" for k, v in params.items())


def basic_challenge(realm: str) -> str:
    return format_challenge("Basic", {"realm": realm})


def bearer_challenge(realm: str, service: str, accesses: Iterable[Access] = (), error: str = "") -> str:
    """The registry's challenge naming the token endpoint and the scope the request needs.

    ``error`` is RFC 6750's: "invalid_token" (bad, expired or foreign token) or
    "insufficient_scope" (a good token that lacks an action)."""
    params = {"realm": realm, "service": service}
    scope = format_scopes(accesses)
    if scope:
        params["scope"] = scope
    if error:
        params["error"] = error
    return format_challenge("Bearer", params)


# --- Authorization --------------------------------------------------------------------------------

def header(headers: Mapping[str, str], name: str) -> str:
    """A header from RequestInfo.headers, case-insensitively whatever the mapping: the server's
    case-insensitive multidict ignores case by itself, a plain dict does not."""
    value = headers.get(name)
    if value is not None:
        return str(value)
    lname = name.lower()
    for k, v in headers.items():
        if k.lower() == lname:
            return str(v)
    return ""


def basic_authorization(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_basic_authorization(value: str) -> tuple[str, str] | None:
    """``(username, password)`` from a ``Basic`` Authorization value; None if it is not one or is
    malformed.  Never raises and never echoes the value (it holds a password)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "basic" or not rest.strip():
        return None
    try:
        raw = base64.b64decode(rest.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    user, sep, password = text.partition(":")
    if not sep or not user:
        return None
    return user, password


def parse_bearer(value: str) -> str | None:
    """The token of a ``Bearer`` Authorization value, or None."""
    scheme, _, rest = value.strip().partition(" ")
    token = rest.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


# --- scopes ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResourceScope:
    type: str
    name: str
    actions: tuple[str, ...]

    def accesses(self) -> list[Access]:
        return [Access(self.type, self.name, a) for a in self.actions]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scope(text: str) -> ResourceScope:
    """One ``type:name:actions`` entry.  Raises InvalidArgument (naming the scope) if malformed."""
    first, last = text.find(":"), text.rfind(":")
    if first <= 0 or last == first:
        raise InvalidArgument(f"invalid scope {text!r}: want type:name:actions")
    rtype, name, actions = text[:first], text[first + 1:last], text[last + 1:]
    if not _SCOPE_TYPE.fullmatch(rtype) or not name or any(c in name for c in " \t\"\\"):
        raise InvalidArgument(f"invalid scope {text!r}")
    acts = [a for a in actions.split(",") if a]
    if not all(_ACTION.fullmatch(a) for a in acts):
        raise InvalidArgument(f"invalid scope {text!r}: bad action")
    return ResourceScope(rtype.split("(", 1)[0], name, tuple(dict.fromkeys(acts)))


def parse_scopes(values: str | Iterable[str]) -> list[ResourceScope]:
    """All scopes in a space-separated string, or in several such strings (repeated ``scope=``)."""
    if isinstance(values, str):
        values = [values]
    return [parse_scope(s) for v in values for s in v.split()]


def format_scopes(accesses: Iterable[Access]) -> str:
    """Group accesses by resource, first-seen order: ``repository:a:pull,push repository:b:pull``."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for a in accesses:
        acts = grouped.setdefault((a.type, a.name), [])
        if a.action not in acts:
            acts.append(a.action)
    return " ".join(f"{t}:{n}:{','.join(acts)}" for (t, n), acts in grouped.items())


# --- the client's challenge flow ------------------------------------------------------------------

@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def with_header(self, name: str, value: str) -> HttpRequest:
        return replace(self, headers={**self.headers, name: value})


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes = b""
    www_authenticate: tuple[str, ...] = ()


@dataclass(frozen=True)
class Credentials:
    """A user name and password, or an identity (refresh) token as ``docker login`` stores it.
    ``repr`` hides the secrets so that a logged Credentials leaks nothing."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)


def token_request(challenge: Challenge, credentials: Credentials | None,
                  client_id: str = "dockyard") -> HttpRequest:
    """The request for a Bearer token that answers ``challenge`` (which must carry a realm).

    With an identity token: the OAuth2 ``refresh_token`` POST (``oauth.md``); otherwise the GET of
    ``token.md`` with one ``scope`` parameter per scope and Basic credentials when there are any."""
    realm = challenge.params.get("realm", "")
    if urlsplit(realm).scheme not in ("http", "https"):
        raise InvalidArgument(f"bearer challenge has no usable realm: {realm!r}")
    service = challenge.params.get("service", "")
    scopes = challenge.params.get("scope", "").split()
    if credentials and credentials.identity_token:
        form = {"grant_type": "refresh_token", "refresh_token": credentials.identity_token,
                "service": service, "client_id": client_id, "scope": " ".join(scopes)}
        return HttpRequest("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"},
                           urlencode(form).encode())
    query: list[tuple[str, str]] = [("service", service)] if service else []
    query += [("scope", s) for s in scopes]
    headers: dict[str, str] = {}
    if credentials and credentials.username:
        query.append(("account", credentials.username))
        headers["Authorization"] = basic_authorization(credentials.username, credentials.password)
    sep = "&" if "?" in realm else "?"
    return HttpRequest("GET", realm + (sep + urlencode(query) if query else ""), headers)


def parse_token_response(body: bytes) -> str:
    """The token from a token endpoint's JSON (``token`` or OAuth2's ``access_token``)."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise InvalidArgument("token response is not JSON") from exc
    token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise InvalidArgument("token response carries no token")
    return token


def auth_flow(request: HttpRequest, credentials: Credentials | None = None, *,
              client_id: str = "dockyard") -> Generator[HttpRequest, HttpResponse, str | None]:
    """Send ``request``; on a 401, answer its challenge once and resend.

    Bearer: fetch a token from the realm (anonymously when there are no credentials — public
    repositories allow that) and retry with it; the generator returns the token so the caller can
    reuse it.  Basic: retry with the credentials, if any.  Anything else (no 401, an unknown scheme,
    a failed token request) ends the flow; the last response is the caller's answer."""
    response = yield request
    if response.status != 401:
        return None
    challenges = parse_challenges(response.www_authenticate)
    bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
    if bearer is not None:
        token_response = yield token_request(bearer, credentials, client_id)
        if token_response.status != 200:
            return None
        token = parse_token_response(token_response.body)
        yield request.with_header("Authorization", f"Bearer {token}")
        return token
    if any(c.scheme == "basic" for c in challenges) and credentials and credentials.username:
        yield request.with_header("Authorization",
                                  basic_authorization(credentials.username, credentials.password))
    return None
