"""Variable substitution: BuildKit's shell lexer tables, run against dockyard's port.

Cases come from moby/buildkit frontend/dockerfile/shell: envVarTest (ProcessWord with
PWD=/home SHELL=bash KOREAN=한국어 NULL=""), wordsTest (ProcessWords), lex_test.go
(TestShellParserMandatoryEnvVars, TestProcessWithMatches, the platform example), plus the
escape-token and error-message behaviour Docker users see.
"""

from __future__ import annotations

import pytest

from dockyard.build.expand import expand, expand_words
from dockyard.errors import InvalidArgument

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}
ERROR = object()

# (source, expected) — envVarTest, the Unix ("A" and "U") lines.
ENV_VAR_TEST = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ("he'llo", ERROR),
    ("he\\'llo", "he'llo"),
    ("he\\\\'llo", ERROR),
    ("abc\\tdef", "abctdef"),
    ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"),
    ("'abc\\tdef'", "abc\\tdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ('"hello', ERROR),
    ('"hello\\"', ERROR),
    ('"hel\'lo"', "hel'lo"),
    ("'hello", ERROR),
    ("'hello\\'", "hello\\"),
    ("'hello\\there'", "hello\\there"),
    ("'hello\\\\there'", "hello\\\\there"),
    ("\"''\"", "''"),
    ("$.", "$."),
    ("he$1x", "hex"),
    ("he$.x", "he$.x"),
    ("he$pwd.", "he."),  # names are case-sensitive on Linux
    ("he$PWD", "he/home"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"),
    ('"he\\\\$PWD"', "he\\/home"),
    ("\\${}", "${}"),
    ("\\${}aaa", "${}aaa"),
    ("he\\${}", "he${}"),
    ("he\\${}xx", "he${}xx"),
    ("${}", ERROR),
    ("${}aaa", ERROR),
    ("he${}", ERROR),
    ("he${}xx", ERROR),
    ("he${hi}", "he"),
    ("he${hi}xx", "hexx"),
    ("he${PWD}", "he/home"),
    ("he${.}", ERROR),
    ("he${XXX:-000}xx", "he000xx"),
    ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX:YYY}", ERROR),
    ("he${XXX?}", ERROR),
    ("he${XXX:?}", ERROR),
    ("he${PWD?}", "he/home"),
    ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"),
    ("he${NULL:?}", ERROR),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"),
    ("he${PWD:+000}xx", "he000xx"),
    ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"),
    ("\"he'$PWD'\"", "he'/home'"),
    ('"$PWD"', "/home"),
    ("'$PWD'", "$PWD"),
    ("'\\$PWD'", "\\$PWD"),
    ("'\"hello\"'", '"hello"'),
    ("'he\\$PWD'", "he\\$PWD"),
    ("he${PWD", ERROR),
    ("he${PWD=000}xx", ERROR),
    ("he${PWD:=000}xx", ERROR),
    ("he${PWD+${PWD}:}xx", "he/home:xx"),
    ("he${XXX-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX+${PWD}}xx", "hexx"),
    ("he${PWD+${PWD}}xx", "he/homexx"),
    ("he${XXX+000}xx", "hexx"),
    ("he${PWD+000}xx", "he000xx"),
    ("he${NULL-000}xx", "hexx"),
    ("he${NULL+000}xx", "he000xx"),
    ("he${NULL:-000}xx", "he000xx"),
    ("he${NULL:+000}xx", "hexx"),
    ("안녕하세요", "안녕하세요"),
    ("안'녕'하세요", "안녕하세요"),
    ("안'녕하세요", ERROR),
    ("안녕\\'하세요", "안녕'하세요"),
    ("안녕$PWD", "안녕/home"),
    ("안녕${XXX:-${YYY:-yyy}}xx", "안녕yyyxx"),
    ("$KOREAN", "한국어"),
    ("안녕$KOREAN", "안녕한국어"),
    ("${{aaa}", ERROR),
    ("${aaa}}", "}"),
    ("${aaa}}}", "}}"),
    ("${aaa}}}}", "}}}"),
    ("${aaa}xyz}", "xyz}"),
    ("${aaa:-bbb}", "bbb"),
    ("${aaa:-${bbb:-ccc}}", "ccc"),
    ("${aaa:-bbb ${foo}", ERROR),
    ("${aaa:-bbb {foo}", "bbb {foo"),
    ("${:}", ERROR),
    ("${:-bbb}", ERROR),
    ("${:+bbb}", ERROR),
    # positional and special parameters are never set
    ("$1", ""),
    ("${1}", ""),
    ("${1:+bbb}", ""),
    ("${1:-bbb}", "bbb"),
    ("$23", ""),
    ("$@", ""),
    ("${@}", ""),
    ("${@:-bbb}", "bbb"),
    ("$*", ""),
    ("$#", ""),
    ("${#:-bbb}", "bbb"),
    ("$?", ""),
    ("$-", ""),
    ("$$", ""),
    ("$!", ""),
    ("$0", ""),
    ("${0:-bbb}", "bbb"),
]


@pytest.mark.parametrize(("source", "expected"), ENV_VAR_TEST)
def test_env_var_table(source: str, expected: object) -> None:
    if expected is ERROR:
        with pytest.raises(InvalidArgument):
            expand(source, ENV)
    else:
        assert expand(source, ENV) == expected


# wordsTest: (source, env, words)
WORDS_TEST = [
    ("hello", {}, ["hello"]),
    ("hello${hi}bye", {}, ["hellobye"]),
    ("hello${hi}bye", {"hi": "hi"}, ["hellohibye"]),
    ("hello${space}bye", {"space": "abc  def"}, ["helloabc", "defbye"]),
    ('hello"${space}"bye', {"space": "abc  def"}, ["helloabc  defbye"]),
    ('hello "${space}"bye', {"space": "abc  def"}, ["hello", "abc  defbye"]),
    ("hello${leading}def", {"leading": "  ab c"}, ["hello", "ab", "cdef"]),
    ('hello"${leading}" def', {"leading": "  ab c"}, ["hello  ab c", "def"]),
    ('hello"${leading}"', {"leading": "  ab c"}, ["hello  ab c"]),
    ("hello${leading}", {"leading": "  ab c"}, ["hello", "ab", "c"]),
    ("hello${trailing}", {"trailing": "ab c   "}, ["helloab", "c"]),
    ("hello${trailing}d", {"trailing": "ab c   "}, ["helloab", "c", "d"]),
    ('hello"${trailing}"d', {"trailing": "ab c   "}, ["helloab c   d"]),
    ('hel"lo${trailing}"', {"trailing": "ab c   "}, ["helloab c   "]),
    ('hello" there  "', {}, ["hello there  "]),
    ("hello there     ", {}, ["hello", "there"]),
    ("hello\\ there", {}, ["hello there"]),
    ('hello\\" there', {}, ['hello"', "there"]),
    ('hello"\\\\there"', {}, ["hello\\there"]),
    ('hello"\\there"', {}, ["hello\\there"]),
    ("hello'\\\\there'", {}, ["hello\\\\there"]),
    ("hello'\\there'", {}, ["hello\\there"]),
    ("hello'$there'", {}, ["hello$there"]),
    ('""', {}, []),
    ("", {}, []),
    ("a  ''  b", {}, ["a", "b"]),
    ("80/tcp $PORTS", {"PORTS": "443 8080/udp"}, ["80/tcp", "443", "8080/udp"]),
]


@pytest.mark.parametrize(("source", "env", "words"), WORDS_TEST)
def test_words_table(source: str, env: dict[str, str], words: list[str]) -> None:
    assert expand_words(source, env) == words


def test_words_error_on_open_quote() -> None:
    with pytest.raises(InvalidArgument):
        expand_words('hello" there', {})


def test_expand_keeps_inner_whitespace_that_words_would_split() -> None:
    env = {"space": "abc  def"}
    assert expand("hello ${space} bye", env) == "hello abc  def bye"
    assert expand_words("hello ${space} bye", env) == ["hello", "abc", "def", "bye"]


# --- the modifiers, one by one (lex_test.go TestProcessWithMatches) ---------------------------

MODIFIERS = [
    ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc"),
    ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc"),
    ("${FOO:-}", {"FOO": "xxx"}, "xxx"),
    ("${FOO:-}", {}, ""),
    ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb "),
    ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  "),
    ("${FOO?aaa}", {"FOO": "xxx"}, "xxx"),
    ("${BAR?bbb}", {"BAR": ""}, ""),
    ("${FOO:?aaa}", {"FOO": "xxx"}, "xxx"),
    # pattern removal
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x"),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx"),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y"),
    ("${FOO#*}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy"),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"),
    ("${FOO#}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy"),
    ("${FOO##}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y"),
    ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy."),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a"),
    ("${FOO%}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO%%$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"),
    ("${FOO%y*}", {"FOO": "xxyy"}, "xxy"),
    ("${FOO%%y*}", {"FOO": "xxyy"}, "xx"),
    ("${FILE%.tar.gz}", {"FILE": "app-1.2.tar.gz"}, "app-1.2"),
    ("${URL##*/}", {"URL": "https://x.example/a/b/pkg.tgz"}, "pkg.tgz"),
    # replacement
    (
        "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
        {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
        "/foo.*/*.txt - /foo..*.txt",
    ),
    (
        "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
        {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
        "/tmp/bar.txt - /bar.txt",
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
        {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"},
        "/foo/b/c.txt - /foo/c.txt",
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT}",
        {"FOO": "http://google.de", "NEEDLE": "http://", "REPLACEMENT": "https://"},
        "https://google.de",
    ),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt"),
    ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy"),
    ("${FOO///}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO///}", {}, ""),
    # the buildkit release-name example
    (
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
        {"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"},
        "something-v1.2.3.linux-arm-v7.tar.gz",
    ),
    (
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
        {"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "amd64"},
        "something-v1.2.3.linux-amd64.tar.gz",
    ),
    # nested words: quotes and escapes inside the default
    ('${X:-"a b"}', {}, "a b"),
    ("${X:-'$PWD'}", {"PWD": "/home"}, "$PWD"),
    ('${X:-"}"}', {}, "}"),
    ("${X:-\\}}", {}, "}"),
    ("${X:-a\\ b}", {}, "a b"),
]


@pytest.mark.parametrize(("source", "env", "expected"), MODIFIERS)
def test_modifiers(source: str, env: dict[str, str], expected: str) -> None:
    assert expand(source, env) == expected


@pytest.mark.parametrize(
    ("source", "env", "message"),
    [
        ("${BAZ?ccc}", {}, "BAZ: ccc"),
        ("${BAR:?bbb}", {"BAR": ""}, "BAR: bbb"),
        ("${BAZ:?ccc}", {}, "BAZ: ccc"),
        ("${BAZ:?}", {}, "BAZ: is not allowed to be unset"),  # unset is checked first
        ("${BAZ?}", {}, "BAZ: is not allowed to be unset"),
        ("${BAR:?}", {"BAR": ""}, "BAR: is not allowed to be empty"),
        ("${FOO=aaa}", {"FOO": "xxx"}, "unsupported modifier (=) in substitution"),
        ("${FOO=:aaa}", {"FOO": "xxx"}, "unsupported modifier (=) in substitution"),
        ("${FOO=}", {}, "unsupported modifier (=) in substitution"),
        ("${FOO:=x}", {}, "unsupported modifier (:=) in substitution"),
        ("${FOO//ww}", {"FOO": "xxyy"}, "syntax error: missing '/' in ${}"),
        ("${FOO//}", {"FOO": "xxyy"}, "syntax error: missing '/' in ${}"),
        ("${", {}, "syntax error: missing '}'"),
        ("${FOO", {}, "syntax error: missing '}'"),
        ("${FOO:-x", {}, "syntax error: missing '}'"),
        ("${}", {}, "syntax error: bad substitution"),
        ("${:x}", {}, "syntax error: bad substitution"),
        ('"open', {}, "unexpected end of statement while looking for matching double-quote"),
        ("'open", {}, "unexpected end of statement while looking for matching single-quote"),
        ("${FOO#\\x}", {"FOO": "a"}, "invalid pattern (\\x) in substitution: invalid escape '\\x'"),
    ],
)
def test_errors_carry_buildkit_messages(source: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        expand(source, env)
    assert str(info.value).startswith("failed to process ")
    assert str(info.value).endswith(": " + message)


def test_mandatory_vars_message_is_expanded() -> None:
    """TestShellParserMandatoryEnvVars: the message is a word, so $ARG inside it expands."""
    no_empty, no_unset = "${VAR:?message here$ARG}", "${VAR?message here$ARG}"
    set_env, empty_env, unset_env = {"VAR": "plain", "ARG": "x"}, {"VAR": "", "ARG": "x"}, {"ARG": "x"}
    assert expand(no_empty, set_env) == "plain"
    for env in (empty_env, unset_env):
        with pytest.raises(InvalidArgument, match="message herex"):
            expand(no_empty, env)
    assert expand(no_unset, set_env) == "plain"
    assert expand(no_unset, empty_env) == ""
    with pytest.raises(InvalidArgument, match="message herex"):
        expand(no_unset, unset_env)


def test_error_names_the_whole_word() -> None:
    with pytest.raises(InvalidArgument) as info:
        expand('/app/${DIR:?set DIR} "x"', {})
    assert str(info.value) == 'failed to process "/app/${DIR:?set DIR} \\"x\\"": DIR: set DIR'


# --- the escape character -------------------------------------------------------------------


def test_backtick_escape() -> None:
    env = {"PWD": "/home"}
    assert expand("`$PWD", env, escape="`") == "$PWD"
    assert expand("c:\\windows\\$PWD", env, escape="`") == "c:\\windows\\/home"
    assert expand('"a`"b"', env, escape="`") == 'a"b'
    assert expand("a` b", env, escape="`") == "a b"
    assert expand_words("a` b c", env, escape="`") == ["a b", "c"]


def test_escape_must_be_one_character() -> None:
    with pytest.raises(InvalidArgument):
        expand("x", {}, escape="")


def test_process_quotes_false_keeps_quotes_for_heredoc_bodies() -> None:
    env = {"NAME": "world"}
    body = "echo \"hello $NAME\" '$NAME' \\$HOME\n"
    assert expand(body, env, process_quotes=False) == "echo \"hello world\" 'world' $HOME\n"


def test_unicode_names_and_values() -> None:
    assert expand("$név-${név}", {"név": "é"}) == "é-é"
    assert expand("$A١", {"A١": "arabic digit"}) == "arabic digit"


def test_environment_is_a_mapping_and_not_mutated() -> None:
    env = {"A": "1"}
    assert expand("${A:-2}${B:-3}", env) == "13"
    assert env == {"A": "1"}
