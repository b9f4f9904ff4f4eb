"""Users in an Apache htpasswd file (bcrypt only) and the Basic-auth authorizer built on it.

The file is what ``htpasswd -B`` and ``dockyard registry user add`` write, one user a line::

    alice:$2y$10$Jd4M0lEA0.wWbAdo6qNCl.XQm7Tc4Ib6h2cFQTs7QWV/3uWjr7JHO
    bob:$2b$12$...

Lines that are blank, start with ``#``, or carry another hash kind (MD5 ``$apr1$``, ``{SHA}``,
crypt) are ignored, with a warning naming the user but never the hash: the CNCF registry also
accepts bcrypt alone, and the weaker kinds are not worth supporting.

The file is re-read when its inode, size or mtime changes (one ``stat`` per authentication), so
``user add``/``rm`` take effect without restarting any registry process.  Writes replace the file
atomically (temporary file + rename, mode 0600).

bcrypt is slow on purpose (~0.1-0.3 s per check at cost 10-12), and docker sends Basic credentials
on every request of a push.  A successful check is therefore remembered, keyed by an HMAC of
(user, password) under a per-process random key — never the password itself — and only for as long
as the user's hash in the file is unchanged.  Checks run in a worker thread so the event loop keeps
serving.  An unknown user still costs one bcrypt check, so timing does not reveal who exists.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import bcrypt

from dockyard.errors import InvalidArgument, NotFound, PermissionDenied
from dockyard.registry.auth import Access, Grant, RequestInfo, Unauthenticated
from dockyard.registry.auth.challenge import basic_challenge, header, parse_basic_authorization
from dockyard.registry.auth.policy import Policy, PolicySource, policy_source

log = logging.getLogger(__name__)

BCRYPT_MAX_BYTES = 72
DEFAULT_COST = 10
_USER = re.compile(r"[^:\s]+")
_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


@functools.cache
def _dummy_hash() -> str:
    """A valid hash of a random password: unknown users are checked against it, so that a miss
    costs as much as a wrong password.  Made on first use (it costs a bcrypt round)."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(DEFAULT_COST)).decode()


def validate_username(name: str) -> str:
    if not _USER.fullmatch(name):
        raise InvalidArgument(f"invalid user name {name!r}: must be non-empty, without ':' or spaces")
    return name


def hash_password(password: str, cost: int = DEFAULT_COST) -> str:
    """A ``$2y$`` bcrypt hash (the prefix ``htpasswd -B`` writes; Go's and Python's bcrypt accept it)."""
    raw = password.encode()
    if not raw:
        raise InvalidArgument("empty password")
    if len(raw) > BCRYPT_MAX_BYTES:
        raise InvalidArgument(f"password longer than {BCRYPT_MAX_BYTES} bytes (bcrypt's limit)")
    return "$2y$" + bcrypt.hashpw(raw, bcrypt.gensalt(cost)).decode()[4:]


def check_password(password: str, hashed: str) -> bool:
    """bcrypt comparison; like Apache and older Go bcrypt, only the first 72 bytes count."""
    try:
        return bcrypt.checkpw(password.encode()[:BCRYPT_MAX_BYTES], hashed.encode())
    except ValueError:
        return False


def parse_htpasswd(text: str, source: str = "htpasswd") -> dict[str, str]:
    """user -> bcrypt hash; unusable lines are skipped with a warning (never quoting the hash)."""
    entries: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not _USER.fullmatch(user):
            log.warning("%s:%d: ignoring a malformed line", source, n)
        elif not _BCRYPT.fullmatch(hashed):
            log.warning("%s:%d: ignoring user %r: only bcrypt hashes are supported", source, n, user)
        else:
            entries[user] = hashed
    return entries


def format_htpasswd(entries: dict[str, str]) -> str:
    return "".join(f"{u}:{h}\n" for u, h in entries.items())


class HtpasswdFile:
    """The users of one htpasswd file.  Thread-safe; cheap to call per request.

    A missing file means no users (every login fails) rather than an error, so a registry can start
    before its first ``user add``."""

    def __init__(self, path: str | os.PathLike[str], cache_size: int = 1024) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, str] = {}
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, str] = {}
        self._cache_size = cache_size

    def entries(self) -> dict[str, str]:
        """The current user -> hash table, re-read if the file changed."""
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                if stamp is None:
                    self._entries = {}
                else:
                    try:
                        text = self.path.read_text(encoding="utf-8", errors="replace")
                    except FileNotFoundError:
                        text = ""
                    self._entries = parse_htpasswd(text, str(self.path))
                self._stamp = stamp
            return self._entries

    def users(self) -> list[str]:
        return sorted(self.entries())

    def exists(self, user: str) -> bool:
        return user in self.entries()

    def verify(self, user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s.  Blocking (bcrypt); see ``authenticate``."""
        hashed = self.entries().get(user)
        key = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if hashed is not None and self._verified.get(key) == hashed:
                return True
        if hashed is None:
            check_password(password, _dummy_hash())
            return False
        if not check_password(password, hashed):
            return False
        with self._lock:
            if len(self._verified) >= self._cache_size:
                self._verified.clear()
            self._verified[key] = hashed
        return True

    async def authenticate(self, user: str, password: str) -> bool:
        return await asyncio.to_thread(self.verify, user, password)

    # --- editing (the CLI) ------------------------------------------------------------------

    def set_password(self, user: str, password: str, cost: int = DEFAULT_COST) -> bool:
        """Add ``user`` or change their password; True if the user is new."""
        validate_username(user)
        hashed = hash_password(password, cost)
        entries = dict(self.entries())
        new = user not in entries
        entries[user] = hashed
        self._write(entries)
        return new

    def remove(self, user: str) -> None:
        """Remove ``user``; NotFound if there is no such user."""
        entries = dict(self.entries())
        if user not in entries:
            raise NotFound(f"no such user: {user}")
        del entries[user]
        self._write(entries)

    def _write(self, entries: dict[str, str]) -> None:
        """Replace the file atomically, keeping lines this module does not understand out of it
        (they were ignored anyway) and the mode at 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".htpasswd.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(format_htpasswd(entries))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            self._stamp = (-1, -1, -1)      # re-read on next use, whatever the file's stamp is


class HtpasswdAuthorizer:
    """Basic authentication against an htpasswd file, then the policy decides.

    - No Authorization header: anonymous; allowed if the policy lets anonymous clients have every
      needed access (and the request needs some — ``/v2/`` must challenge, or ``docker login``
      would "succeed" without checking the password).  Otherwise 401 with the Basic challenge.
    - Wrong user or password, or a malformed header: 401 with the Basic challenge.
    - Authenticated but the policy refuses an access: PermissionDenied (403 DENIED).
    """

    def __init__(self, users: HtpasswdFile, policy: Policy | PolicySource | None = None,
                 realm: str = "dockyard") -> None:
        self.users = users
        self.policy = policy_source(policy if policy is not None else Policy.allow_authenticated())
        self.realm = realm

    def _challenge(self, message: str) -> Unauthenticated:
        return Unauthenticated(message, challenge=basic_challenge(self.realm))

    async def authorize(self, request: RequestInfo, access: Sequence[Access]) -> Grant:
        policy = self.policy()
        authorization = header(request.headers, "Authorization")
        if not authorization:
            if access and not policy.denied("", access):
                return Grant("", tuple(access))
            raise self._challenge("authentication required")
        creds = parse_basic_authorization(authorization)
        if creds is None:
            raise self._challenge("basic authentication required")
        user, password = creds
        if not await self.users.authenticate(user, password):
            log.info("registry: failed login for user %r from %s", user, request.remote or "?")
            raise self._challenge("invalid username or password")
        denied = policy.denied(user, access)
        if denied:
            raise PermissionDenied(f"requested access to the resource is denied "
                                   f"({', '.join(a.scope() for a in denied)})")
        return Grant(user, tuple(access))
