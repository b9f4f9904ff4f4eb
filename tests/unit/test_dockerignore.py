""".dockerignore: tables from Docker's documentation and moby/patternmatcher's own tests.

Sources: the docker docs page on .dockerignore (the ``*/temp*`` and ``*.md`` / ``!README*.md``
examples), patternmatcher_test.go (TestMatches, TestMatch — itself Go's filepath.Match table —
and the folder-exclusion tests), ignorefile_test.go (TestReadAll).
"""

from __future__ import annotations

import pytest

from dockyard.build.dockerignore import (
    IgnoreMatcher,
    clean_path,
    ignore_file_candidates,
    read_ignore_patterns,
)
from dockyard.errors import InvalidArgument


def excluded(patterns: list[str], path: str) -> bool:
    return IgnoreMatcher(patterns).excluded(path)


# --- reading the file (ignorefile.ReadAll) --------------------------------------------------


def test_read_all_from_ignorefile_test() -> None:
    content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! "
    assert read_ignore_patterns(content) == [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "!inverted/abs/path",
        "!",
        "!",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("\n\n   \n\t\n", []),
        ("# only a comment\n#another", []),
        ("  # not a comment: it does not start the line", ["# not a comment: it does not start the line"]),
        ("\ufeffnode_modules\n", ["node_modules"]),
        ("./foo\n", ["foo"]),
        ("foo/\n", ["foo"]),
        ("a//b/../c/./d\n", ["a/c/d"]),
        ("  spaced.txt  \n", ["spaced.txt"]),
        ("/\n", ["/"]),
        ("!./keep\n", ["!keep"]),
        ("*.md\r\n!README.md\r\n", ["*.md", "!README.md"]),
        ("..\n../x\n", ["..", "../x"]),
    ],
)
def test_read_ignore_patterns(text: str, expected: list[str]) -> None:
    assert read_ignore_patterns(text) == expected


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("", "."),
        (".", "."),
        ("a/", "a"),
        ("./a", "a"),
        ("a/./b", "a/b"),
        ("a/b/..", "a"),
        ("a/../..", ".."),
        ("/../a", "/a"),
        ("//a//b", "/a/b"),
        ("/", "/"),
    ],
)
def test_clean_path_is_go_filepath_clean(raw: str, clean: str) -> None:
    assert clean_path(raw) == clean


def test_ignore_file_candidates_prefer_the_dockerfile_specific_one() -> None:
    assert ignore_file_candidates("build/app.Dockerfile") == [
        "build/app.Dockerfile.dockerignore",
        ".dockerignore",
    ]


# --- the docs page ----------------------------------------------------------------------------

DOCS_EXAMPLE = read_ignore_patterns("# comment\n*/temp*\n*/*/temp*\ntemp?\n")


@pytest.mark.parametrize(
    ("path", "is_excluded"),
    [
        ("somedir/temporary.txt", True),  # */temp*
        ("somedir/temp", True),
        ("somedir/temp/inside.txt", True),  # a matched directory excludes what is below it
        ("somedir/subdir/temporary.txt", True),  # */*/temp*
        ("tempa", True),  # temp?
        ("tempb", True),
        ("temp", False),  # ? is exactly one character
        ("tempab", False),
        ("temporary.txt", False),  # */temp* needs one directory level
        ("a/b/c/temp.txt", False),  # nothing matches three levels down
        ("# comment", False),
    ],
)
def test_docs_example(path: str, is_excluded: bool) -> None:
    assert IgnoreMatcher(DOCS_EXAMPLE).excluded(path) is is_excluded


@pytest.mark.parametrize(
    ("patterns", "path", "is_excluded"),
    [
        # "*.md / !README.md": markdown at the root except README.md
        (["*.md", "!README.md"], "CHANGES.md", True),
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "docs/guide.md", False),  # *.md does not cross /
        # "*.md / !README*.md / README-secret.md": README files only, but not the secret one
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README-public.md", False),
        (["*.md", "!README*.md", "README-secret.md"], "other.md", True),
        # "*.md / README-secret.md / !README*.md": every README included; last match wins
        (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
        (["*.md", "README-secret.md", "!README*.md"], "other.md", True),
        # **/*.go anywhere in the context
        (["**/*.go"], "main.go", True),
        (["**/*.go"], "cmd/tool/main.go", True),
        (["**/*.go"], "cmd/tool/main.go.txt", False),
        # leading / and ./ mean the context root
        (["/foo/bar"], "foo/bar", True),
        (["foo/bar"], "foo/bar", True),
        (["./foo/bar"], "foo/bar", True),
        (["/foo/bar"], "x/foo/bar", False),
        # the pattern "." matches nothing; the root is never excluded
        (["."], "anything", False),
        (["*"], "", False),
        (["*"], ".", False),
        # the Dockerfile and .dockerignore can be excluded like any file
        (["Dockerfile", ".dockerignore"], "Dockerfile", True),
        (["Dockerfile", ".dockerignore"], ".dockerignore", True),
        (["*", "!src"], "Dockerfile", True),
        (["*", "!src"], "src/app.py", False),
    ],
)
def test_docs_rules(patterns: list[str], path: str, is_excluded: bool) -> None:
    assert excluded(patterns, path) is is_excluded


# --- patternmatcher_test.go: TestMatches (MatchesOrParentMatches) ------------------------------

EXACT, INEXACT, FAIL = "exact", "inexact", "fail"

MATCHES = [
    ("**", "file", EXACT),
    ("**", "file/", EXACT),
    ("**/", "file", EXACT),
    ("**/", "file/", EXACT),
    ("**", "dir/file", EXACT),
    ("**/", "dir/file", EXACT),
    ("**", "dir/file/", EXACT),
    ("**/", "dir/file/", EXACT),
    ("**/**", "dir/file", EXACT),
    ("**/**", "dir/file/", EXACT),
    ("dir/**", "dir/file", EXACT),
    ("dir/**", "dir/file/", EXACT),
    ("dir/**", "dir/dir2/file", EXACT),
    ("dir/**", "dir/dir2/file/", EXACT),
    ("**/dir", "dir", EXACT),
    ("**/dir", "dir/file", INEXACT),
    ("**/dir2/*", "dir/dir2/file", EXACT),
    ("**/dir2/*", "dir/dir2/file/", INEXACT),
    ("**/dir2/**", "dir/dir2/dir3/file", EXACT),
    ("**/dir2/**", "dir/dir2/dir3/file/", EXACT),
    ("**file", "file", EXACT),
    ("**file", "dir/file", EXACT),
    ("**/file", "dir/file", EXACT),
    ("**file", "dir/dir/file", EXACT),
    ("**/file", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file.txt", EXACT),
    ("**/file*txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt*", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt2", "dir/dir/file.txt", FAIL),
    ("**/*.txt", "file.txt", EXACT),
    ("**/**/*.txt", "file.txt", EXACT),
    ("a**/*.txt", "a/file.txt", EXACT),
    ("a**/*.txt", "a/dir/file.txt", EXACT),
    ("a**/*.txt", "a/dir/dir/file.txt", EXACT),
    ("a/*.txt", "a/dir/file.txt", FAIL),
    ("a/*.txt", "a/file.txt", EXACT),
    ("a/*.txt**", "a/file.txt", EXACT),
    ("a[b-d]e", "ae", FAIL),
    ("a[b-d]e", "ace", EXACT),
    ("a[b-d]e", "aae", FAIL),
    ("a[^b-d]e", "aze", EXACT),
    (".*", ".foo", EXACT),
    (".*", "foo", FAIL),
    ("abc.def", "abcdef", FAIL),
    ("abc.def", "abc.def", EXACT),
    ("abc.def", "abcZdef", FAIL),
    ("abc?def", "abcZdef", EXACT),
    ("abc?def", "abcdef", FAIL),
    ("**/foo/bar", "foo/bar", EXACT),
    ("**/foo/bar", "dir/foo/bar", EXACT),
    ("**/foo/bar", "dir/dir2/foo/bar", EXACT),
    ("abc/**", "abc", FAIL),
    ("abc/**", "abc/def", EXACT),
    ("abc/**", "abc/def/ghi", EXACT),
    ("**/.foo", ".foo", EXACT),
    ("**/.foo", "bar.foo", FAIL),
    ("a(b)c/def", "a(b)c/def", EXACT),
    ("a(b)c/def", "a(b)c/xyz", FAIL),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", EXACT),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        EXACT,
    ),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", EXACT),
    ("a\\\\", "a\\", EXACT),
    ("a\\*b", "a*b", EXACT),
]


@pytest.mark.parametrize(("pattern", "text", "kind"), MATCHES)
def test_patternmatcher_matches(pattern: str, text: str, kind: str) -> None:
    assert excluded([pattern], text) is (kind != FAIL)


@pytest.mark.parametrize(
    ("patterns", "text", "is_excluded"),
    [
        (["**", "!util/docker/web"], "util/docker/web/foo", False),
        (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
        (
            ["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            False,
        ),
        (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
        # TestExclusionPatternMatchesPatternBefore / After
        (["!fileutils.go", "*.go"], "fileutils.go", True),
        (["*.go", "!fileutils.go"], "fileutils.go", False),
        # TestPatternMatchesFolderExclusions and friends: the exception wins inside the folder
        (["docs", "!docs/README.md"], "docs/README.md", False),
        (["docs/", "!docs/README.md"], "docs/README.md", False),
        (["docs/*", "!docs/README.md"], "docs/README.md", False),
        (["docs", "!docs/README.md"], "docs/other.md", True),
        (["docs", "!docs/README.md"], "docs", True),
        # an exception for a directory keeps everything under it
        (["docs", "!docs/keep"], "docs/keep/deep/file", False),
        (["docs", "!docs/keep", "docs/keep/secret"], "docs/keep/secret/x", True),
        ([], "/any/path/there", False),
        (["*"], "fileutils.go", True),
        (["*.go"], "fileutils.go", True),
    ],
)
def test_patternmatcher_multi(patterns: list[str], text: str, is_excluded: bool) -> None:
    assert excluded(patterns, text) is is_excluded


# --- TestMatch: Go's filepath.Match table, as patternmatcher runs it -------------------------

FILEPATH_MATCH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", True),  # through the parent "ab"
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("*x", "xxx", True),
]


@pytest.mark.parametrize(("pattern", "text", "match"), FILEPATH_MATCH)
def test_filepath_match_table(pattern: str, text: str, match: bool) -> None:
    assert excluded([pattern], text) is match


@pytest.mark.parametrize(
    "pattern",
    ["[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "[z-a]", "ok/a\\"],
)
def test_malformed_patterns_are_rejected(pattern: str) -> None:
    with pytest.raises(InvalidArgument, match="syntax error in pattern"):
        IgnoreMatcher([pattern])


@pytest.mark.parametrize("patterns", [["!"], ["a", "  !  "], read_ignore_patterns("!\n")])
def test_lone_exclamation_is_rejected(patterns: list[str]) -> None:
    with pytest.raises(InvalidArgument, match='illegal exclusion pattern: "!"'):
        IgnoreMatcher(patterns)


# --- cleaning inside the matcher --------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "path", "is_excluded"),
    [
        (["  docs  "], "docs/x", True),
        (["docs", "  !docs/README.md"], "docs/README.md", False),
        (["docs", "!docs/README.md  "], "docs/README.md", False),
        (["a/./b/../c"], "a/c", True),
        (["docs", ""], "docs", True),
        (["x"], "/x", True),  # a leading / on the path is tolerated
        (["x"], "./x", True),
        (["x"], "x/", True),
        (["#notacomment"], "#notacomment", True),  # only read_ignore_patterns knows comments
    ],
)
def test_matcher_cleans_patterns_and_paths(patterns: list[str], path: str, is_excluded: bool) -> None:
    assert excluded(patterns, path) is is_excluded


def test_is_dir_does_not_change_the_answer() -> None:
    matcher = IgnoreMatcher(["build"])
    assert matcher.excluded("build", is_dir=True)
    assert matcher.excluded("build", is_dir=False)


def test_patterns_and_exceptions_are_exposed() -> None:
    matcher = IgnoreMatcher(["docs", "", "!docs/README.md"])
    assert [(p.text, p.exclusion) for p in matcher.patterns] == [("docs", False), ("docs/README.md", True)]
    assert matcher.has_exceptions
    assert not IgnoreMatcher(["docs"]).has_exceptions


# --- walking into excluded directories ---------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "directory", "walk"),
    [
        (["docs"], "docs", False),  # no exceptions at all
        (["docs", "!docs/README.md"], "docs", True),
        (["docs", "!docs/README.md"], "docs/sub", False),
        (["docs", "!docs/sub/keep"], "docs/sub", True),
        (["docs", "!other/keep"], "docs", False),
        (["docs", "!docs"], "docs", True),
        (["*", "!src/**/*.py"], "src", True),
        (["*", "!src/**/*.py"], "src/a/b", True),
        (["*", "!src/**/*.py"], "tests", False),
        (["**", "!**/keep.txt"], "any/depth/here", True),
        (["*", "!*/keep.txt"], "lib", True),
        (["*", "!*/keep.txt"], "lib/deeper", False),
        (["*", "!s*c/x"], "src", True),
        (["*", "!s*c/x"], "lib", False),
        (["build", "!build"], "build/x", True),  # a shorter exception matches through parents
        (["a"], "", False),
        (["a", "!b"], ".", True),
    ],
)
def test_may_contain_exceptions(patterns: list[str], directory: str, walk: bool) -> None:
    assert IgnoreMatcher(patterns).may_contain_exceptions(directory) is walk


def test_walk_scenario_keeps_exactly_the_exception() -> None:
    """A small tree walked as context.py will: prune unless an exception may be inside."""
    tree = {
        "Dockerfile": None,
        "docs": {"README.md": None, "guide.md": None, "img": {"logo.png": None}},
        "node_modules": {"pkg": {"index.js": None}},
        "src": {"app.py": None, "app.pyc": None, "sub": {"x.pyc": None}},
    }
    matcher = IgnoreMatcher(read_ignore_patterns("node_modules\n**/*.pyc\ndocs\n!docs/README.md\n"))
    kept: list[str] = []

    def walk(node: dict[str, object], prefix: str) -> None:
        for name, child in sorted(node.items()):
            path = f"{prefix}{name}"
            if isinstance(child, dict):
                if matcher.excluded(path, is_dir=True) and not matcher.may_contain_exceptions(path):
                    continue
                walk(child, path + "/")
            elif not matcher.excluded(path):
                kept.append(path)

    walk(tree, "")
    assert kept == ["Dockerfile", "docs/README.md", "src/app.py"]
