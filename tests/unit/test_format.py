"""``--format``: the Go template subset, Go's printing, and docker CLI tables byte for byte.

Table expectations marked "docker/cli" are copied from cli/command/formatter/image_test.go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from dockyard.cli.format import NO_VALUE, format_rows, parse_template, render, render_table, tabwrite
from dockyard.errors import InvalidArgument
from dockyard.oci.models import Descriptor
from dockyard.oci.reference import parse_normalized

DIGEST = "sha256:cbbf2f9a99b47fc460d422812b6a5adff7dfee951d8fa2e4a98caa0382cfbdbf"


@dataclass
class Row:
    repository: str
    tag: str
    ID: str
    labels: dict[str, str] = field(default_factory=dict)
    _secret: str = "hidden"

    @property
    def created_since(self) -> str:
        return "24 hours ago"

    def label(self, name: str) -> str:
        return self.labels.get(name, "")


DATA: dict[str, Any] = {
    "Name": "web",
    "Count": 3,
    "Zero": 0,
    "Ratio": 0.5,
    "Big": 1e6,
    "Flag": True,
    "Nil": None,
    "Empty": "",
    "List": ["a", "b", "c"],
    "Nums": [3, 1, 2],
    "Labels": {"com.example.b": "2", "com.example.a": "<1>"},
    "Config": {"Env": ["A=1", "B=2"], "User": "root", "Nested": {"Deep": "yes"}},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # fields, nesting, literals
        ("plain text", "plain text"),
        ("{{.Name}}", "web"),
        ("{{ .Name }}", "web"),
        ("{{.Config.User}}", "root"),
        ("{{.Config.Nested.Deep}}", "yes"),
        ("{{.Missing}}", "<no value>"),
        ("{{.Missing.Deeper}}", "<no value>"),
        ("{{.Nil}}", "<nil>"),
        ("{{.Count}} {{.Ratio}} {{.Big}} {{.Flag}}", "3 0.5 1e+06 true"),
        ("{{.List}} {{.Labels}}", "[a b c] map[com.example.a:<1> com.example.b:2]"),
        ('{{"literal"}}', "literal"),
        ('{{"tab\\there"}}', "tab\there"),
        ("{{`raw\\t`}}", "raw\\t"),
        ("{{'a'}} {{42}} {{-1}} {{1.5}} {{0x10}} {{true}}", "97 42 -1 1.5 16 true"),
        # trim markers and comments
        ("a  {{- .Name -}}  b", "awebb"),
        ("a {{- /* comment */ -}} b", "ab"),
        ("a{{/* comment */}}b", "ab"),
        ("x\n  {{- .Name}}\n", "xweb\n"),
        ("{{.Name -}}\n\t y", "weby"),
        # json
        ("{{json .Labels}}", '{"com.example.a":"<1>","com.example.b":"2"}'),
        ("{{json .List}}", '["a","b","c"]'),
        ("{{json .Nil}} {{json .Missing}}", "null null"),
        ("{{json .Ratio}} {{json .Big}} {{json .Count}}", "0.5 1000000 3"),
        ("{{.Config | json}}", '{"Env":["A=1","B=2"],"Nested":{"Deep":"yes"},"User":"root"}'),
        ("{{json .Name}}", '"web"'),
        # index / len / slice
        ('{{index .Labels "com.example.a"}}', "<1>"),
        ('{{index .Labels "missing"}}|', "|"),
        ("{{index .List 1}} {{index .Nums 0}}", "b 3"),
        ('{{index .Config "Nested" "Deep"}}', "yes"),
        ("{{len .List}} {{len .Labels}} {{len .Name}}", "3 2 3"),
        ("{{slice .List 1}} {{slice .List 1 2}} {{slice .Name 1}}", "[b c] [b] eb"),
        # range
        ("{{range .List}}[{{.}}]{{end}}", "[a][b][c]"),
        ("{{range $i, $e := .List}}{{$i}}={{$e}} {{end}}", "0=a 1=b 2=c "),
        ("{{range $e := .List}}{{$e}}{{end}}", "abc"),
        ("{{range $k, $v := .Labels}}{{$k}}:{{$v}};{{end}}", "com.example.a:<1>;com.example.b:2;"),
        ("{{range .Missing}}x{{else}}none{{end}}", "none"),
        ("{{range .Config.Env}}{{if eq . \"B=2\"}}{{break}}{{end}}{{.}} {{end}}", "A=1 "),
        ("{{range .List}}{{if eq . \"b\"}}{{continue}}{{end}}{{.}}{{end}}", "ac"),
        ("{{range 3}}{{.}}{{end}}", "012"),
        ("{{range .List}}{{$.Name}}{{end}}", "webwebweb"),
        # if / with
        ("{{if .Flag}}yes{{else}}no{{end}}", "yes"),
        ("{{if .Zero}}a{{else if .Empty}}b{{else if .Count}}c{{else}}d{{end}}", "c"),
        ("{{if .Missing}}a{{else}}b{{end}}", "b"),
        ("{{if .Nil}}a{{else}}b{{end}}", "b"),
        ("{{if and .Flag .Count}}y{{end}}{{if or .Zero .Empty}}n{{end}}{{if not .Zero}}!{{end}}", "y!"),
        ("{{and 1 0 2}} {{or 0 \"\" 5}} {{and 1 2}}", "0 5 2"),
        ("{{with .Config}}{{.User}}{{end}}", "root"),
        ("{{with .Missing}}x{{else}}fallback{{end}}", "fallback"),
        ("{{with .Zero}}x{{else with .Name}}{{.}}{{end}}", "web"),
        # comparisons
        ("{{eq .Count 3}} {{eq .Name \"x\" \"web\"}} {{ne .Count 4}}", "true true true"),
        ("{{lt 1 2}} {{le 2 2}} {{gt 3 2}} {{ge 1 2}} {{lt \"a\" \"b\"}}", "true true true false true"),
        # variables
        ("{{$x := .Name}}{{$x}}-{{$x = \"new\"}}{{$x}}", "web-new"),
        ("{{$n := len .List}}{{if gt $n 2}}many{{end}}", "many"),
        ("{{$.Config.User}}", "root"),
        # docker functions
        ('{{join .List ", "}}', "a, b, c"),
        ("{{lower \"ABC\"}} {{upper .Name}} {{title \"hello wide-world\"}}", "abc WEB Hello Wide-World"),
        ('{{split "a:b:c" ":"}} {{index (split "a:b" ":") 1}} {{len (split "ab" "")}}', "[a b c] b 2"),
        ("{{truncate .Name 2}}|{{truncate .Name 10}}", "we|web"),
        ("{{pad .Name 1 2}}|{{pad .Empty 1 2}}|", " web  ||"),
        ("{{println .Name .Count}}", "web 3\n"),
        ("{{print .Name .Count 1 2}}", "web3 1 2"),
        # printf
        ('{{printf "%s=%d" .Name .Count}}', "web=3"),
        ('{{printf "%5s|%-5s|%05d|%x|%X|%o|%b" "ab" "ab" 42 255 255 8 5}}', "   ab|ab   |00042|ff|FF|10|101"),
        ('{{printf "%.2f %e %g %v %t %q %c %%" .Ratio .Ratio .Big .List .Flag .Name 65}}',
         '0.50 5.000000e-01 1e+06 [a b c] true "web" A %'),
        ('{{printf "%d" .Name}}', "%!d(string=web)"),
        ('{{printf "%s %s" .Name}}', "web %!s(MISSING)"),
        ('{{printf "%s" .Name 1}}', "web%!(EXTRA int=1)"),
        ('{{printf "%T %T %T" .Name .Count .Labels}}', "string int map[string]interface {}"),
        # pipes
        ("{{.Name | upper}}", "WEB"),
        ('{{.Name | printf "%s-%s" "x"}}', "x-web"),
        ("{{.Name | len}}", "3"),
        ("{{(index .Config.Env 1) | lower}}", "b=2"),
        ("{{(.Config).User}}", "root"),
        # html / js / urlquery
        ('{{html "<a href=\'x\'>&</a>"}}', "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"),
        ('{{js "it\'s <b>"}}', "it\\'s \\u003Cb\\u003E"),
        ('{{urlquery "a b&c"}}', "a+b%26c"),
    ],
)  # fmt: skip
def test_constructs(template: str, expected: str) -> None:
    assert render(template, DATA) == expected


def test_dot_prints_the_whole_value() -> None:
    assert render("{{.}}", {"b": 1, "a": [1, 2]}) == "map[a:[1 2] b:1]"
    assert render("{{.}}", [1.0, None, True]) == "[1 <nil> true]"


def test_objects_fields_properties_methods_and_snake_case() -> None:
    row = Row("busybox", "latest", "abc", labels={"k": "v"})
    assert (
        render("{{.ID}} {{.Repository}} {{.Tag}} {{.CreatedSince}}", row) == "abc busybox latest 24 hours ago"
    )
    assert render('{{.Label "k"}}|{{.Label "nope"}}', row) == "v|"
    assert render('{{index .Labels "k"}}', row) == "v"
    assert render("{{json .}}", row) == (
        '{"repository":"busybox","tag":"latest","ID":"abc","labels":{"k":"v"}}'
    )
    with pytest.raises(InvalidArgument, match="can't evaluate field Secret in type Row"):
        render("{{.Secret}}", row)


def test_private_and_builtin_attributes_are_unreachable() -> None:
    for template in ("{{._secret}}", "{{.__class__}}"):
        with pytest.raises(InvalidArgument, match="template parsing error"):
            render(template, Row("a", "b", "c"))
    with pytest.raises(InvalidArgument, match="can't evaluate field Upper in type string"):
        render("{{.Name.Upper}}", DATA)


def test_objects_with_str_and_to_dict() -> None:
    ref = parse_normalized("busybox:1.36")
    assert render("{{.}}", ref) == "docker.io/library/busybox:1.36"
    assert render("{{.FamiliarName}} {{.FamiliarString}}", ref) == "busybox busybox:1.36"
    desc = Descriptor(
        "application/vnd.oci.empty.v1+json", "sha256:" + "a" * 64, 2, annotations={"z": "1", "a": "<"}
    )
    assert render("{{json .}}", desc) == (
        '{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:' + "a" * 64 + '","size":2,'
        '"annotations":{"a":"<","z":"1"}}'
    )


def test_missingkey_error_as_docker_inspect_uses_it() -> None:
    with pytest.raises(InvalidArgument) as exc:
        render("{{.Config.Nope}}", DATA, missing_key="error")
    assert str(exc.value) == (
        'template parsing error: template: :1:2: executing "" at <.Config.Nope>: map has no entry for key "Nope"'
    )
    assert render("{{.Config.User}}", DATA, missing_key="error") == "root"


def test_render_leaves_backslash_t_alone() -> None:
    assert render("{{.Name}}\\t{{.Count}}", DATA) == "web\\t3"


def test_template_is_reusable() -> None:
    tmpl = parse_template("{{.Name}}!")
    assert [tmpl.execute({"Name": n}) for n in "ab"] == ["a!", "b!"]
    assert NO_VALUE is not None


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        # parse errors
        ("{{InvalidFunction}}", 'template: :1: function "InvalidFunction" not defined'),  # docker/cli
        ("{{.Name", "template: :1: unclosed action"),
        ("{{.Name}", 'template: :1: unexpected "}" in operand'),
        ("{{if .Flag}}x", "template: :1: unexpected EOF"),
        ("x{{end}}", "template: :1: unexpected {{end}}"),
        ("{{else}}", "template: :1: unexpected {{else}}"),
        ("{{}}", "template: :1: missing value for command"),
        ("{{$x}}", 'template: :1: undefined variable "$x"'),
        ("{{range .List}}{{$e := .}}{{end}}{{$e}}", 'template: :1: undefined variable "$e"'),
        ('{{"abc}}', "template: :1: unterminated quoted string"),
        ("{{/* never closed", "template: :1: unclosed comment"),
        ("{{/* c */ .Name}}", "template: :1: comment ends before closing delimiter"),
        ("{{break}}", "template: :1: {{break}} outside {{range}}"),
        ("{{(.Name}}", "template: :1: unclosed left paren"),
        ("{{.Name)}}", "template: :1: unexpected right paren"),
        ("line1\n{{foo}}", 'template: :2: function "foo" not defined'),
        ("{{define \"x\"}}{{end}}", "template: :1: {{define}} is not supported"),
        # execution errors
        ("{{nil}}", 'template: :1:2: executing "" at <nil>: nil is not a command'),  # docker/cli
        ("{{index .List 5}}", 'template: :1:2: executing "" at <index .List 5>: error calling index: index out of range: 5'),
        ("{{upper .Count}}", 'template: :1:2: executing "" at <upper .Count>: wrong type for value; expected string; got int'),
        ("{{upper}}", 'template: :1:2: executing "" at <upper>: wrong number of args for upper: want 1 got 0'),
        ("{{.Nil.Field}}", 'template: :1:2: executing "" at <.Nil.Field>: nil pointer evaluating interface {}.Field'),
        ("{{.Name.Field}}", 'template: :1:2: executing "" at <.Name.Field>: can\'t evaluate field Field in type string'),
        ("{{eq .Count \"3\"}}", 'template: :1:2: executing "" at <eq .Count "3">: error calling eq: incompatible types for comparison'),
        ("{{range .Name}}{{end}}", 'template: :1:8: executing "" at <.Name>: range can\'t iterate over web'),
        ('{{join .Nums ","}}', 'template: :1:2: executing "" at <join .Nums ",">: wrong type for value; expected []string; got []interface {}'),
        ("x\n {{.Config.User 1}}", 'template: :2:3: executing "" at <.Config.User 1>: User is not a method but has arguments'),
    ],
)  # fmt: skip
def test_errors_are_go_worded(template: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        render(template, DATA)
    assert str(exc.value) == "template parsing error: " + message


# --- tables and the docker CLI's --format handling --------------------------------------------

IMAGES = [
    {"Repository": "image", "Tag": "tag1", "Digest": DIGEST, "ID": "imageID1", "CreatedSince": "24 hours ago", "Size": "0B"},
    {"Repository": "image", "Tag": "tag2", "Digest": "<none>", "ID": "imageID2", "CreatedSince": "N/A", "Size": "0B"},
    {"Repository": "<none>", "Tag": "<none>", "Digest": "<none>", "ID": "imageID3", "CreatedSince": "24 hours ago",
     "Size": "0B"},
]  # fmt: skip
HEADERS = {
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "ID": "IMAGE ID",
    "CreatedSince": "CREATED",
    "Size": "SIZE",
}
DEFAULT_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"


def test_default_image_table_matches_docker_cli() -> None:  # docker/cli image_test.go
    expected = (
        "REPOSITORY   TAG       IMAGE ID   CREATED        SIZE\n"
        "image        tag1      imageID1   24 hours ago   0B\n"
        "image        tag2      imageID2   N/A            0B\n"
        "<none>       <none>    imageID3   24 hours ago   0B\n"
    )
    assert format_rows(None, IMAGES, DEFAULT_TABLE, HEADERS) == expected
    assert format_rows("", IMAGES, DEFAULT_TABLE, HEADERS) == expected
    assert format_rows("table", IMAGES, DEFAULT_TABLE, HEADERS) == expected


def test_digest_table_matches_docker_cli() -> None:  # docker/cli image_test.go
    fmt = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    assert format_rows(fmt, IMAGES, DEFAULT_TABLE, HEADERS) == (
        "REPOSITORY   TAG       DIGEST                                                                    IMAGE ID   CREATED        SIZE\n"
        "image        tag1      sha256:cbbf2f9a99b47fc460d422812b6a5adff7dfee951d8fa2e4a98caa0382cfbdbf   imageID1   24 hours ago   0B\n"
        "image        tag2      <none>                                                                    imageID2   N/A            0B\n"
        "<none>       <none>    <none>                                                                    imageID3   24 hours ago   0B\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("table {{.Repository}}", "REPOSITORY\nimage\nimage\n<none>\n"),  # docker/cli
        ("table {{.Digest}}", f"DIGEST\n{DIGEST}\n<none>\n<none>\n"),  # docker/cli
        ("table {{.Repository}}\\t{{.Digest}}",  # docker/cli, with the \t escape
         f"REPOSITORY   DIGEST\nimage        {DIGEST}\nimage        <none>\n<none>       <none>\n"),
        ("table   {{.ID}}\\t{{upper .Tag}}  ", "IMAGE ID   TAG\nimageID1   TAG1\nimageID2   TAG2\nimageID3   <NONE>\n"),
        ("table {{json .Tag}}\\t{{.ID}}", 'TAG        IMAGE ID\n"tag1"     imageID1\n"tag2"     imageID2\n"<none>"   imageID3\n'),
        ("table {{.ID}}:{{.Nope}}", "IMAGE ID:NOPE\nimageID1:<no value>\nimageID2:<no value>\nimageID3:<no value>\n"),
        ("table {{pad .ID 1 1}}|", " IMAGE ID |\n imageID1 |\n imageID2 |\n imageID3 |\n"),
        ("{{.ID}}\\t{{.Tag}}", "imageID1\ttag1\nimageID2\ttag2\nimageID3\t<none>\n"),
        ("{{.ID}}\\n{{.Tag}}", "imageID1\ntag1\nimageID2\ntag2\nimageID3\n<none>\n"),
        ("json", "".join(
            f'{{"CreatedSince":"{r["CreatedSince"]}","Digest":"{r["Digest"]}","ID":"{r["ID"]}",'
            f'"Repository":"{r["Repository"]}","Size":"0B","Tag":"{r["Tag"]}"}}\n' for r in IMAGES)),
        ("tableau {{.ID}}", "au IMAGE ID\nau imageID1\nau imageID2\nau imageID3\n"),  # docker's HasPrefix("table")
    ],
)  # fmt: skip
def test_format_rows(fmt: str, expected: str) -> None:
    assert format_rows(fmt, IMAGES, DEFAULT_TABLE, HEADERS) == expected


def test_table_with_no_rows_prints_the_header() -> None:  # docker/cli TestImageContextWriteWithNoImage
    assert format_rows("table {{.Repository}}", [], DEFAULT_TABLE, HEADERS) == "REPOSITORY\n"
    assert (
        format_rows("table {{.Repository}}\t{{.Digest}}", [], DEFAULT_TABLE, HEADERS)
        == "REPOSITORY   DIGEST\n"
    )
    assert format_rows("{{.Repository}}", [], DEFAULT_TABLE, HEADERS) == ""


def test_render_table_accepts_formats_without_the_table_prefix() -> None:
    assert render_table("{{.ID}}\t{{.Tag}}", IMAGES[:1], HEADERS) == "IMAGE ID   TAG\nimageID1   tag1\n"


def test_table_row_error_raises() -> None:
    with pytest.raises(InvalidArgument, match="wrong type for value"):
        format_rows("table {{upper .Count}}", [{"Count": 1}], DEFAULT_TABLE, {"Count": "COUNT"})


def test_header_error_keeps_partial_header_like_go() -> None:
    # index on a title string fails during the header pass; Go keeps what was written before.
    out = format_rows(
        'table {{.ID}}\t{{index .Labels "k"}}', [{"ID": "x", "Labels": {"k": "v"}}], "", {"ID": "ID"}
    )
    assert out == "ID        \nx         v\n"


def test_table_with_object_rows() -> None:
    rows = [
        Row("busybox", "latest", "a416a98b71e2"),
        Row("registry.example.com/team/app", "v1.2.3", "0123456789ab"),
    ]
    out = format_rows(None, rows, "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}", HEADERS)
    assert out == (
        "REPOSITORY                      TAG       IMAGE ID       CREATED\n"
        "busybox                         latest    a416a98b71e2   24 hours ago\n"
        "registry.example.com/team/app   v1.2.3    0123456789ab   24 hours ago\n"
    )


# --- tabwriter ---------------------------------------------------------------------------------


def test_tabwriter_columns_are_blocks_of_consecutive_lines() -> None:
    # Go's Example_elastic, left-aligned: the b's and the d's are in different columns.
    text = "a\tb\tc\naa\tbb\tcc\naaa\t\naaaa\tdddd\teeee\n"
    assert tabwrite(text, 0, 0, 1, ".") == "a....b..c\naa...bb.cc\naaa..\naaaa.dddd.eeee\n"


def test_tabwriter_docker_settings() -> None:
    assert tabwrite("A\tB\nlonger-than-ten\tx\n") == "A                 B\nlonger-than-ten   x\n"
    assert tabwrite("no tabs\n") == "no tabs\n"
    assert tabwrite("trailing\t\n") == "trailing   \n"
    assert tabwrite("no newline\tat end") == "no newline   at end"


def test_tabwriter_counts_wide_characters_as_two_cells() -> None:
    assert tabwrite("日本語\tx\nab\ty\n", 0, 1, 1) == "日本語 x\nab     y\n"


def test_nested_fields_in_a_table_header_keep_the_first_title() -> None:
    rows = [{"Config": {"User": "root"}, "Name": "web"}]
    assert format_rows(
        "table {{.Name}}\t{{.Config.User}}", rows, "", {"Name": "NAME", "Config": "CONFIG"}
    ) == ("NAME      CONFIG\nweb       root\n")


def test_unknown_missingkey_option() -> None:
    with pytest.raises(InvalidArgument, match="missingkey"):
        parse_template("{{.}}", missing_key="zero")
