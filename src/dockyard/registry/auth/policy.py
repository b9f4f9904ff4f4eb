"""Access-control policy: who may do what to which repositories.  Pure; no files are read here.

A policy is a list of *grants* — there are no deny rules, and whatever no rule grants is denied::

    groups:                          # group -> members (user names from the htpasswd file)
      admins: [alice]
      developers: [bob, carol]
    rules:
      - groups: [admins]
        repositories: ["**"]
        actions: ["*"]               # pull, push, delete and catalog
      - groups: [developers]
        users: [dave]                # users and groups may be combined
        repositories: ["team/*"]
        actions: [pull, push]
      - users: ["*"]                 # "*" = any authenticated user
        repositories: ["library/**"]
        actions: [pull]
    anonymous:                       # repositories anyone may pull without credentials
      - "public/**"

Repository patterns are globs over the ``/``-separated name: ``*`` matches within one component,
``?`` one character of it, ``**`` anything across components (``team/**`` is everything under
``team/``; ``**/app`` is ``app`` at any depth, including the top; ``**`` is every repository).

Actions: ``pull``, ``push``, ``delete`` on repositories; ``catalog`` is the registry-wide listing
(``registry:catalog:*``), granted by any rule that lists it whatever its repositories; ``*`` is all
four.  Nothing implies anything else: a pusher needs ``pull`` too (docker pulls layers it pushes).

Anonymous clients get ``pull`` on the ``anonymous`` patterns and nothing else; the rules never apply
to them (``users: ["*"]`` means *authenticated* users).

Every malformed input — an unknown key (a typo must not silently widen or narrow access), an
unknown action, a pattern no repository name could match — raises InvalidArgument naming where.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

from dockyard.errors import InvalidArgument
from dockyard.registry.auth import Access

REPOSITORY_ACTIONS: frozenset[str] = frozenset({"pull", "push", "delete"})
POLICY_ACTIONS: frozenset[str] = REPOSITORY_ACTIONS | {"catalog"}
_PATTERN = re.compile(r"[a-z0-9._\-/*?]+")


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression for a repository glob (see the module docstring)."""
    if not _PATTERN.fullmatch(pattern):
        raise InvalidArgument(f"invalid repository pattern {pattern!r}: lower-case names, / * ** ? only")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def matches(pattern: str, repository: str) -> bool:
    return compile_pattern(pattern).fullmatch(repository) is not None


@dataclass(frozen=True)
class Rule:
    """Grants ``actions`` on ``repositories`` to ``users`` and to members of ``groups``."""

    repositories: tuple[str, ...]
    actions: frozenset[str]
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def applies_to(self, user: str, user_groups: frozenset[str]) -> bool:
        if not user:
            return False
        return user in self.users or "*" in self.users or bool(self.groups & user_groups)

    def covers(self, repository: str) -> bool:
        return any(matches(p, repository) for p in self.repositories)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    anonymous: tuple[str, ...] = ()          # patterns anonymous clients may pull

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def allow_authenticated(cls, anonymous: Iterable[str] = ()) -> Policy:
        """The policy when none is configured: any authenticated user may do anything (what the
        CNCF registry's htpasswd mode does); anonymous clients only what ``anonymous`` allows."""
        return cls((Rule(("**",), POLICY_ACTIONS, users=frozenset({"*"})),),
                   anonymous=_patterns(list(anonymous), "anonymous"))

    @classmethod
    def from_yaml(cls, text: str) -> Policy:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidArgument(f"policy is not valid YAML: {exc}") from exc
        return cls.parse(data)

    @classmethod
    def parse(cls, data: Any) -> Policy:
        """A Policy from the decoded YAML/JSON document (None or {} is the deny-all policy)."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise InvalidArgument("policy: want a mapping with groups, rules and anonymous")
        _no_unknown_keys(data, {"groups", "rules", "anonymous"}, "policy")
        groups_doc = data.get("groups") or {}
        if not isinstance(groups_doc, Mapping):
            raise InvalidArgument("policy.groups: want a mapping of group name to members")
        groups = {str(g): frozenset(_names(m, f"policy.groups.{g}")) for g, m in groups_doc.items()}
        rules_doc = data.get("rules") or []
        if not isinstance(rules_doc, list):
            raise InvalidArgument("policy.rules: want a list")
        rules = tuple(_rule(r, f"policy.rules[{i}]", groups) for i, r in enumerate(rules_doc))
        anonymous = _patterns(data.get("anonymous") or [], "policy.anonymous")
        return cls(rules, groups, anonymous)

    def with_anonymous(self, patterns: Iterable[str]) -> Policy:
        """This policy with more repository patterns anonymous clients may pull."""
        extra = _patterns(list(patterns), "anonymous")
        return Policy(self.rules, self.groups, tuple(dict.fromkeys(self.anonymous + extra)))

    # --- decisions --------------------------------------------------------------------------

    def groups_of(self, user: str) -> frozenset[str]:
        return frozenset(g for g, members in self.groups.items() if user in members)

    def actions(self, user: str, rtype: str, name: str) -> frozenset[str]:
        """What ``user`` ("" = anonymous) may do to one resource: a subset of pull/push/delete for
        ``repository``, ``{"*"}`` or nothing for ``registry:catalog``, nothing for anything else."""
        if rtype == "registry":
            if name != "catalog" or not user:
                return frozenset()
            user_groups = self.groups_of(user)
            ok = any("catalog" in r.actions and r.applies_to(user, user_groups) for r in self.rules)
            return frozenset({"*"}) if ok else frozenset()
        if rtype != "repository":
            return frozenset()
        allowed: set[str] = set()
        if any(matches(p, name) for p in self.anonymous):
            allowed.add("pull")
        if user:
            user_groups = self.groups_of(user)
            for r in self.rules:
                if r.applies_to(user, user_groups) and r.covers(name):
                    allowed |= r.actions & REPOSITORY_ACTIONS
        return frozenset(allowed)

    def permits(self, user: str, access: Access) -> bool:
        allowed = self.actions(user, access.type, access.name)
        if access.action == "*":
            return "*" in allowed or (access.type == "repository" and allowed >= REPOSITORY_ACTIONS)
        return access.action in allowed or "*" in allowed

    def denied(self, user: str, accesses: Sequence[Access]) -> list[Access]:
        """The accesses ``user`` may not have (empty: all permitted)."""
        return [a for a in accesses if not self.permits(user, a)]

    def narrow(self, user: str, requested: Iterable[Access]) -> list[Access]:
        """Requested ∩ allowed, as the token server must compute it (``token.md``): never an
        error, just fewer accesses.  A requested ``*`` on a repository becomes the actions the
        user actually has unless that is all of them."""
        out: list[Access] = []
        for a in requested:
            if a.action == "*" and a.type == "repository" and not self.permits(user, a):
                allowed = self.actions(user, a.type, a.name)
                out += [Access(a.type, a.name, act) for act in sorted(allowed)]
            elif self.permits(user, a):
                out.append(a)
        return list(dict.fromkeys(out))


PolicySource = Callable[[], Policy]


def policy_source(policy: Policy | PolicySource) -> PolicySource:
    """Authorizers take a Policy or a callable returning the current one (a file being watched)."""
    if isinstance(policy, Policy):
        return lambda: policy
    return policy


# --- parsing helpers ------------------------------------------------------------------------------

def _no_unknown_keys(doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in doc if k not in allowed)
    if unknown:
        raise InvalidArgument(f"{where}: unknown key(s) {', '.join(unknown)} "
                              f"(allowed: {', '.join(sorted(allowed))})")


def _names(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidArgument(f"{where}: want a list of names")
    return list(value)


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    names = _names(value, where)
    for p in names:
        try:
            compile_pattern(p)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
    return tuple(names)


def _rule(doc: Any, where: str, groups: Mapping[str, frozenset[str]]) -> Rule:
    if not isinstance(doc, Mapping):
        raise InvalidArgument(f"{where}: want a mapping")
    _no_unknown_keys(doc, {"users", "groups", "repositories", "actions"}, where)
    users = frozenset(_names(doc.get("users"), f"{where}.users"))
    rule_groups = frozenset(_names(doc.get("groups"), f"{where}.groups"))
    if not users and not rule_groups:
        raise InvalidArgument(f"{where}: names no users or groups (anonymous access goes under "
                              "'anonymous')")
    missing = sorted(rule_groups - set(groups))
    if missing:
        raise InvalidArgument(f"{where}.groups: undefined group(s) {', '.join(missing)}")
    repositories = _patterns(doc.get("repositories"), f"{where}.repositories")
    actions = set(_names(doc.get("actions"), f"{where}.actions"))
    if not actions:
        raise InvalidArgument(f"{where}.actions: want at least one of pull, push, delete, catalog, *")
    bad = sorted(actions - POLICY_ACTIONS - {"*"})
    if bad:
        raise InvalidArgument(f"{where}.actions: unknown action(s) {', '.join(bad)}")
    if "*" in actions:
        actions = set(POLICY_ACTIONS)
    if not repositories and actions != {"catalog"}:
        raise InvalidArgument(f"{where}.repositories: want at least one pattern")
    return Rule(repositories, frozenset(actions), users, rule_groups)
