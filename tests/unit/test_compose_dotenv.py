"""``.env`` / ``env_file`` parsing by docker compose's (compose-go's dotenv) rules."""

from __future__ import annotations

import pytest

from dockyard.compose.dotenv import parse_dotenv
from dockyard.errors import InvalidArgument


def test_plain_pairs_blank_lines_comments_and_export():
    text = """
# a comment
A=1
  B = two words  

export C=3
export   D=4
exporter=5
E=
"""
    assert parse_dotenv(text) == {"A": "1", "B": "two words", "C": "3", "D": "4", "exporter": "5", "E": ""}


def test_later_keys_override_earlier_ones_and_order_is_kept():
    assert list(parse_dotenv("B=1\nA=2\nB=3\n").items()) == [("B", "3"), ("A", "2")]


@pytest.mark.parametrize("line,value", [
    ("K=value # a comment", "value"),
    ("K=value#not-a-comment", "value#not-a-comment"),
    ("K=a b  c   ", "a b  c"),
    ("K=#starts-with-hash", "#starts-with-hash"),
    ("K=url?a=b&c=d", "url?a=b&c=d"),
    ("K=x=y=z", "x=y=z"),
    ("K: yaml style", "yaml style"),
])
def test_unquoted_values(line, value):
    assert parse_dotenv(line) == {"K": value}


def test_single_quotes_are_literal():
    env = {"X": "expanded"}
    assert parse_dotenv(r"K='$X \n ${X} \\ # not a comment'", env) == {"K": r"$X \n ${X} \\ # not a comment"}
    assert parse_dotenv(r"K='it\'s'") == {"K": "it's"}


def test_double_quotes_unescape_and_interpolate():
    env = {"USER": "ann"}
    assert parse_dotenv(r'K="a\nb\tc \"q\" back\\slash ${USER} \$HOME $$X"', env) == {
        "K": 'a\nb\tc "q" back\\slash ann $HOME $X'}
    assert parse_dotenv(r'K="\0101\r\v"') == {"K": "A\r\v"}
    assert parse_dotenv(r'K="keep \x unknown"') == {"K": r"keep \x unknown"}


def test_double_quoted_value_spans_lines_and_comments_after_quotes_are_skipped():
    text = 'K="line one\nline two"  # trailing comment\nNEXT=1\n'
    assert parse_dotenv(text) == {"K": "line one\nline two", "NEXT": "1"}


def test_interpolation_from_earlier_keys_and_the_environment():
    text = "BASE=/opt\nBIN=${BASE}/bin\nPATHS=$BIN:${MISSING:-/usr/bin}\nHOME_DIR=${HOME}/x\n"
    out = parse_dotenv(text, {"HOME": "/home/ann"})
    assert out == {"BASE": "/opt", "BIN": "/opt/bin", "PATHS": "/opt/bin:/usr/bin", "HOME_DIR": "/home/ann/x"}


def test_the_environment_wins_over_earlier_keys_during_expansion():
    # compose-go looks the environment up first
    assert parse_dotenv("A=file\nB=$A\n", {"A": "shell"}) == {"A": "file", "B": "shell"}


def test_unset_variable_expands_empty_and_is_reported():
    missing: list[str] = []
    assert parse_dotenv("K=a${NOPE}b\n", {}, on_missing=missing.append) == {"K": "ab"}
    assert missing == ["NOPE"]


def test_key_alone_is_inherited_from_the_environment_or_left_out():
    env = {"PRESENT": "yes"}
    assert parse_dotenv("PRESENT\nABSENT\nLAST", env) == {"PRESENT": "yes"}
    assert parse_dotenv("export PRESENT\n", env) == {"PRESENT": "yes"}


def test_bom_and_crlf():
    assert parse_dotenv("\ufeffA=1\r\nB=2\r\n") == {"A": "1", "B": "2"}


def test_key_characters():
    assert parse_dotenv("a.b-c[0]_D=1") == {"a.b-c[0]_D": "1"}


@pytest.mark.parametrize("text,message", [
    ("A=1\nMY KEY=1\n", "x.env: line 2: key cannot contain a space"),
    ("A=1\n\nB$=1\n", "x.env: line 3: unexpected character '$' in variable name"),
    ('A=1\nB="never closed\nC=3\n', "x.env: line 2: unterminated quoted value"),
    ("A='open", "x.env: line 1: unterminated quoted value"),
    ("=value", "x.env: line 1: missing variable name"),
    ("A=1\nB=${REQ:?set REQ please}\n", "x.env: line 2: required variable REQ is missing a value: set REQ please"),
    ("A=cost $5\n", "x.env: line 1: invalid interpolation format"),
])
def test_errors_name_the_source_and_line(text, message):
    with pytest.raises(InvalidArgument) as exc:
        parse_dotenv(text, source="x.env")
    assert message in str(exc.value)


def test_line_numbers_count_multiline_values():
    with pytest.raises(InvalidArgument, match="line 4: key cannot contain a space"):
        parse_dotenv('A="one\ntwo\nthree"\nB C=1\n')
