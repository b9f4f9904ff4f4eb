"""The registry's access-control policy: patterns, parsing (every malformed input refused), and the
decision for every user × repository × action of an example policy, checked against a table."""

from __future__ import annotations

import itertools

import pytest

from dockyard.errors import InvalidArgument
from dockyard.registry.auth import Access
from dockyard.registry.auth.policy import (
    POLICY_ACTIONS,
    Policy,
    compile_pattern,
    matches,
    policy_source,
)

# --- patterns -------------------------------------------------------------------------------------

PATTERN_CASES = [
    ("app", "app", True),
    ("app", "apps", False),
    ("app", "team/app", False),
    ("*", "app", True),
    ("*", "team/app", False),
    ("team/*", "team/app", True),
    ("team/*", "team/app/sub", False),
    ("team/*", "team", False),
    ("team/*", "teams/app", False),
    ("team/**", "team/app", True),
    ("team/**", "team/app/sub/deeper", True),
    ("team/**", "team", False),
    ("team/**", "teamx/app", False),
    ("**", "app", True),
    ("**", "a/b/c/d", True),
    ("**/app", "app", True),
    ("**/app", "x/app", True),
    ("**/app", "x/y/app", True),
    ("**/app", "xapp", False),
    ("**/app", "x/apps", False),
    ("team/**/app", "team/app", True),
    ("team/**/app", "team/a/b/app", True),
    ("team/**/app", "other/a/app", False),
    ("team/*/app", "team/x/app", True),
    ("team/*/app", "team/x/y/app", False),
    ("app-?", "app-1", True),
    ("app-?", "app-12", False),
    ("app-?", "app-/", False),
    ("a.b", "a.b", True),
    ("a.b", "axb", False),              # the dot is literal, not a regex wildcard
    ("my_app*", "my_app-v2", True),
    ("*-prod", "web-prod", True),
    ("*-prod", "team/web-prod", False),
    ("*/*", "a/b", True),
    ("*/*", "a", False),
]


@pytest.mark.parametrize("pattern,name,expected", PATTERN_CASES)
def test_pattern(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


@pytest.mark.parametrize("pattern", ["", "Team/*", "a b", "a:b", "a[0-9]", "(x)", "a\\b", "a+"])
def test_invalid_patterns(pattern: str) -> None:
    with pytest.raises(InvalidArgument):
        compile_pattern(pattern)


# --- parsing --------------------------------------------------------------------------------------

EXAMPLE = """
groups:
  admins: [alice]
  developers: [bob, carol]
rules:
  - groups: [admins]
    repositories: ["**"]
    actions: ["*"]
  - groups: [developers]
    repositories: ["team/*"]
    actions: [pull, push]
  - users: [carol]
    repositories: ["team/*"]
    actions: [delete]
  - users: [dave]
    groups: [developers]
    repositories: ["dave/**"]
    actions: [pull, push, delete]
  - users: ["*"]
    repositories: ["library/**"]
    actions: [pull]
anonymous:
  - "public/**"
"""


def example() -> Policy:
    return Policy.from_yaml(EXAMPLE)


def test_parse_example() -> None:
    p = example()
    assert p.groups == {"admins": frozenset({"alice"}), "developers": frozenset({"bob", "carol"})}
    assert len(p.rules) == 5
    assert p.rules[0].actions == POLICY_ACTIONS        # "*" expands to all four
    assert p.anonymous == ("public/**",)
    assert p.groups_of("carol") == {"developers"}
    assert p.groups_of("nobody") == frozenset()


@pytest.mark.parametrize("text", ["", "{}", "null", "rules: []", "groups: {}\nrules:\nanonymous:"])
def test_empty_policies_deny_everything(text: str) -> None:
    p = Policy.from_yaml(text)
    for user in ("", "alice"):
        assert not p.permits(user, Access("repository", "x", "pull"))
        assert not p.permits(user, Access("registry", "catalog", "*"))


BAD = {
    "not yaml": "rules: [",
    "not a mapping": "- a\n- b",
    "unknown top key": "rule: []",
    "groups not a mapping": "groups: [a]",
    "group members not names": "groups: {a: [1]}",
    "rules not a list": "rules: {a: 1}",
    "rule not a mapping": "rules: [x]",
    "unknown rule key": "rules: [{users: [a], repository: ['*'], actions: [pull]}]",
    "no subjects": "rules: [{repositories: ['*'], actions: [pull]}]",
    "undefined group": "rules: [{groups: [ghosts], repositories: ['*'], actions: [pull]}]",
    "no actions": "rules: [{users: [a], repositories: ['*']}]",
    "empty actions": "rules: [{users: [a], repositories: ['*'], actions: []}]",
    "unknown action": "rules: [{users: [a], repositories: ['*'], actions: [pull, write]}]",
    "no repositories": "rules: [{users: [a], actions: [pull]}]",
    "bad pattern": "rules: [{users: [a], repositories: ['Team/*'], actions: [pull]}]",
    "bad anonymous pattern": "anonymous: ['UPPER']",
    "anonymous not names": "anonymous: [{a: 1}]",
    "users not names": "rules: [{users: [[a]], repositories: ['*'], actions: [pull]}]",
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_malformed_policies_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument):
        Policy.from_yaml(text)


def test_error_names_the_place() -> None:
    with pytest.raises(InvalidArgument, match=r"policy\.rules\[1\]\.actions.*write"):
        Policy.from_yaml("rules: [{users: [a], repositories: ['*'], actions: [pull]},"
                         " {users: [a], repositories: ['*'], actions: [write]}]")


def test_catalog_only_rule_needs_no_repositories() -> None:
    p = Policy.from_yaml("rules: [{users: [ops], actions: [catalog]}]")
    assert p.permits("ops", Access("registry", "catalog", "*"))
    assert not p.permits("ops", Access("repository", "x", "pull"))


def test_single_strings_are_accepted_for_lists() -> None:
    p = Policy.from_yaml("rules: [{users: ann, repositories: 'x/*', actions: pull}]")
    assert p.permits("ann", Access("repository", "x/y", "pull"))


# --- decisions: every user x repository x action ---------------------------------------------------

USERS = ["", "alice", "bob", "carol", "dave", "eve"]
REPOS = ["team/app", "team/app/sub", "dave/tool", "dave/a/b", "library/debian", "library/x/y",
         "public/web", "public", "other", "publicity/x"]
ALL = {"pull", "push", "delete"}

# what each (user, repository) may do; anything absent is nothing
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("", "public/web"): {"pull"},
    **{("alice", r): ALL for r in REPOS},
    ("bob", "team/app"): {"pull", "push"},
    ("carol", "team/app"): {"pull", "push", "delete"},
    # rule 4 names dave *and* the developers group
    **{(u, r): ALL for u in ("bob", "carol", "dave") for r in ("dave/tool", "dave/a/b")},
    **{(u, r): {"pull"} for u in ("bob", "carol", "dave", "eve") for r in ("library/debian", "library/x/y")},
    **{(u, "public/web"): {"pull"} for u in ("bob", "carol", "dave", "eve")},
}


@pytest.mark.parametrize("user,repo", list(itertools.product(USERS, REPOS)))
def test_every_decision(user: str, repo: str) -> None:
    p = example()
    want = EXPECTED.get((user, repo), set())
    assert p.actions(user, "repository", repo) == want
    for action in sorted(ALL):
        assert p.permits(user, Access("repository", repo, action)) is (action in want), action
    assert p.permits(user, Access("repository", repo, "*")) is (want == ALL)
    accesses = [Access("repository", repo, a) for a in ("pull", "push", "delete")]
    assert {a.action for a in p.narrow(user, accesses)} == want
    assert {a.action for a in p.denied(user, accesses)} == ALL - want


@pytest.mark.parametrize("user,expected", [("", False), ("alice", True), ("bob", False), ("eve", False)])
def test_catalog(user: str, expected: bool) -> None:
    assert example().permits(user, Access("registry", "catalog", "*")) is expected
    assert example().permits(user, Access("registry", "catalog", "list")) is expected
    assert not example().permits(user, Access("registry", "other", "*"))


def test_unknown_resource_types_are_denied() -> None:
    assert not example().permits("alice", Access("plugin", "team/app", "pull"))


def test_anonymous_never_gets_more_than_pull() -> None:
    p = Policy.from_yaml("rules: [{users: ['*'], repositories: ['**'], actions: ['*']}]\nanonymous: ['**']")
    assert p.actions("", "repository", "anything") == {"pull"}
    assert not p.permits("", Access("registry", "catalog", "*"))
    assert p.actions("someone", "repository", "anything") == ALL


def test_star_user_means_authenticated_only() -> None:
    p = Policy.from_yaml("rules: [{users: ['*'], repositories: ['**'], actions: [pull]}]")
    assert p.permits("x", Access("repository", "a", "pull"))
    assert not p.permits("", Access("repository", "a", "pull"))


def test_narrow_star_request() -> None:
    p = example()
    assert p.narrow("alice", [Access("repository", "x", "*")]) == [Access("repository", "x", "*")]
    assert p.narrow("bob", [Access("repository", "team/app", "*")]) == [
        Access("repository", "team/app", "pull"), Access("repository", "team/app", "push")]
    assert p.narrow("eve", [Access("repository", "team/app", "*")]) == []
    assert p.narrow("", [Access("repository", "public/x", "*")]) == [Access("repository", "public/x", "pull")]


def test_narrow_keeps_order_and_drops_duplicates() -> None:
    req = [Access("repository", "team/app", "push"), Access("repository", "library/x", "push"),
           Access("repository", "team/app", "pull"), Access("repository", "team/app", "push"),
           Access("registry", "catalog", "*")]
    assert example().narrow("bob", req) == [Access("repository", "team/app", "push"),
                                            Access("repository", "team/app", "pull")]


def test_allow_authenticated_default() -> None:
    p = Policy.allow_authenticated(["pub/*"])
    assert p.actions("anyone", "repository", "x/y/z") == ALL
    assert p.permits("anyone", Access("registry", "catalog", "*"))
    assert p.actions("", "repository", "pub/a") == {"pull"}
    assert p.actions("", "repository", "x") == set()


def test_with_anonymous_adds_patterns() -> None:
    p = example().with_anonymous(["library/*", "public/**"])
    assert p.anonymous == ("public/**", "library/*")
    assert p.actions("", "repository", "library/debian") == {"pull"}
    with pytest.raises(InvalidArgument):
        example().with_anonymous(["BAD"])


def test_policy_source() -> None:
    p = example()
    assert policy_source(p)() is p
    assert policy_source(lambda: p)() is p
