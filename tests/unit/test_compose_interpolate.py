"""The Compose Specification's interpolation: one string, and a whole parsed tree."""

from __future__ import annotations

import pytest

from dockyard.compose.interpolate import interpolate_tree, project_environment, substitute
from dockyard.errors import InvalidArgument

ENV = {"SET": "value", "EMPTY": "", "A": "a", "B": "b", "PORT": "8080"}


@pytest.mark.parametrize("template,expected", [
    ("plain", "plain"),
    ("$SET", "value"),
    ("${SET}", "value"),
    ("pre-${SET}-post", "pre-value-post"),
    ("$SET/$A:$B", "value/a:b"),
    ("$SET.suffix", "value.suffix"),
    ("${UNSET}", ""),
    ("$UNSET", ""),
    # defaults
    ("${SET:-d}", "value"),
    ("${EMPTY:-d}", "d"),
    ("${UNSET:-d}", "d"),
    ("${SET-d}", "value"),
    ("${EMPTY-d}", ""),
    ("${UNSET-d}", "d"),
    ("${UNSET:-}", ""),
    ("${UNSET:-a default with spaces}", "a default with spaces"),
    ("${UNSET:-http://x:1/y}", "http://x:1/y"),
    # replacements
    ("${SET:+r}", "r"),
    ("${EMPTY:+r}", ""),
    ("${UNSET:+r}", ""),
    ("${SET+r}", "r"),
    ("${EMPTY+r}", "r"),
    ("${UNSET+r}", ""),
    # required, when satisfied
    ("${SET:?msg}", "value"),
    ("${EMPTY?msg}", ""),
    # nesting and escapes
    ("${UNSET:-${A}}", "a"),
    ("${UNSET:-${ALSO_UNSET:-x}}", "x"),
    ("${UNSET:-pre-${B}-post}", "pre-b-post"),
    ("${SET:+${A}${B}}", "ab"),
    ("${UNSET:-${A:+${B}}}!", "b!"),
    ("$$", "$"),
    ("$$SET", "$SET"),
    ("$${SET}", "${SET}"),
    ("a $$ b", "a $ b"),
    ("${UNSET:-$$}", "$"),
    ("${UNSET:-{x}y}", "{xy}"),  # the first } closes: default "{x", then "y}" is plain text
    ("${PORT}:80", "8080:80"),
])
def test_substitute(template, expected):
    assert substitute(template, ENV) == expected


def test_defaults_are_expanded_only_when_used():
    assert substitute("${SET:-${NOPE:?not needed}}", ENV) == "value"
    with pytest.raises(InvalidArgument, match="required variable NOPE is missing a value: needed"):
        substitute("${UNSET:-${NOPE:?needed}}", ENV)


@pytest.mark.parametrize("template,message", [
    ("${UNSET:?please set it}", "required variable UNSET is missing a value: please set it"),
    ("${EMPTY:?empty is not enough}", "required variable EMPTY is missing a value: empty is not enough"),
    ("${UNSET?}", "required variable UNSET is missing a value"),
    ("${UNSET:?${A} is the hint}", "required variable UNSET is missing a value: a is the hint"),
])
def test_required_variables(template, message):
    with pytest.raises(InvalidArgument) as exc:
        substitute(template, ENV)
    assert str(exc.value) == message


@pytest.mark.parametrize("template", ["$", "cost: 5$", "$5", "$ x", "${}", "${A", "${A B}", "${A:x}", "${1A}",
                                      "${A:-${B}", "$-"])
def test_invalid_templates(template):
    with pytest.raises(InvalidArgument, match="invalid interpolation format"):
        substitute(template, ENV)


def test_missing_variables_are_reported_once_each_time_they_are_read():
    seen: list[str] = []
    substitute("$X ${Y} ${Z:-d} ${SET}", ENV, on_missing=seen.append)
    assert seen == ["X", "Y"]  # a default means the author expected it could be unset


def test_tree_interpolates_values_not_keys():
    tree = {
        "services": {
            "${A}": {"image": "img:${TAG:-latest}", "ports": ["${PORT}:80", 9000], "read_only": True,
                     "environment": {"KEY_$A": "$B"}},
        },
        "x-count": 3,
        "nothing": None,
    }
    out = interpolate_tree(tree, ENV)
    assert out == {
        "services": {
            "${A}": {"image": "img:latest", "ports": ["8080:80", 9000], "read_only": True,
                     "environment": {"KEY_$A": "b"}},
        },
        "x-count": 3,
        "nothing": None,
    }
    assert tree["services"]["${A}"]["image"] == "img:${TAG:-latest}"  # the input is left alone


def test_tree_errors_name_the_path_and_file():
    tree = {"services": {"web": {"image": "${IMAGE:?set IMAGE}"}}}
    with pytest.raises(InvalidArgument) as exc:
        interpolate_tree(tree, {}, where="compose.yaml")
    assert str(exc.value) == ("compose.yaml: error while interpolating services.web.image: "
                              "required variable IMAGE is missing a value: set IMAGE")
    with pytest.raises(InvalidArgument) as exc:
        interpolate_tree({"services": {"web": {"ports": ["80", "$5"]}}}, {})
    assert str(exc.value).startswith("invalid interpolation format for services.web.ports.1")
    assert "You may need to escape any $ with another $" in str(exc.value)


def test_tree_convert_hook_sees_only_changed_strings():
    calls = []

    def convert(path, value):
        calls.append((path, value))
        return value == "true" if path[-1] == "flag" else value

    out = interpolate_tree({"a": {"flag": "${T}", "plain": "text", "other": "$T"}}, {"T": "true"}, convert=convert)
    assert out == {"a": {"flag": True, "plain": "text", "other": "true"}}
    assert calls == [(("a", "flag"), "true"), (("a", "other"), "true")]


def test_tree_keeps_container_subclasses():
    class Marked(dict):
        pass

    class MarkedList(list):
        pass

    out = interpolate_tree({"env": Marked({"A": "$A"}), "l": MarkedList(["$B"])}, ENV)
    assert type(out["env"]) is Marked and out["env"] == {"A": "a"}
    assert type(out["l"]) is MarkedList and out["l"] == ["b"]


def test_shell_environment_wins_over_dotenv():
    env = project_environment({"TAG": "shell", "ONLY_SHELL": "1"}, {"TAG": "dotenv", "ONLY_FILE": "2"})
    assert env == {"TAG": "shell", "ONLY_SHELL": "1", "ONLY_FILE": "2"}
    assert project_environment({"A": "1"}, None) == {"A": "1"}
