"""Image references: the tables of distribution/reference's own tests, run against our port.

Cases come from normalize_test.go (ParseNormalizedNamed, FamiliarName, ParseAnyReference,
splitDockerDomain) and reference_test.go (Parse, WithTag, WithDigest), plus the messages the
docker CLI prints.
"""

from __future__ import annotations

import time

import pytest

from dockyard.errors import InvalidArgument
from dockyard.oci.reference import (
    DigestReference,
    Reference,
    looks_like_image_id,
    parse,
    parse_any_reference,
    parse_docker_ref,
    parse_normalized,
    validate_repository_name,
)

HEX = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
FFF = "sha256:" + "f" * 64
DBCC = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"

# --- normalize_test.go: TestValidateReferenceName / TestValidateRemoteName -------------------

VALID_NAMES = [
    "docker/docker",
    "library/debian",
    "debian",
    "docker.io/docker/docker",
    "docker.io/library/debian",
    "docker.io/debian",
    "index.docker.io/docker/docker",
    "index.docker.io/library/debian",
    "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian",
    "192.168.0.1",
    "192.168.0.1:80",
    "192.168.0.1:8/debian",
    "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/" + HEX,
    "Docker/docker",
    "DOCKER/docker",
    "docker-rules/docker",
    "docker---rules/docker",
    "doc/docker",
    "d/docker",
    "jess/t",
    "dock__er/docker",
]

INVALID_NAMES = [
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker/Docker",
    "docker.io/docker///docker",
    "[fc00::1]",
    "[fc00::1]:5000",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    HEX,
    "docker-/docker",
    "-docker-/docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_" * 4 + "/docker",
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name: str) -> None:
    ref = parse_normalized(name)
    assert ref.domain and ref.path


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_normalized(name)


# --- normalize_test.go: TestParseRepositoryInfo --------------------------------------------
# (remote name, familiar name, full name, ambiguous spelling or "", domain)
REPOSITORY_INFO = [
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io"),
    ("other/library", "other/library", "docker.io/other/library", "", "docker.io"),
    ("private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "", "127.0.0.1:8000"),
    ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "", "127.0.0.1:8000"),
    ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", "", "example.com"),
    ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
    ("private/moonbase", "example.com:8000/private/moonbase", "example.com:8000/private/moonbase", "", "example.com:8000"),
    ("privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", "", "example.com:8000"),
    ("library/ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
     "index.docker.io/library/ubuntu-12.04-base", "docker.io"),
    ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io"),
    ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
    ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spelling", "remote", "familiar", "full", "domain"),
    [
        (spelling, remote, familiar, full, domain)
        for remote, familiar, full, ambiguous, domain in REPOSITORY_INFO
        for spelling in (familiar, full, ambiguous)
        if spelling
    ],
)
def test_repository_info(spelling: str, remote: str, familiar: str, full: str, domain: str) -> None:
    ref = parse_normalized(spelling)
    assert ref.familiar_name == familiar
    assert str(ref) == full
    assert ref.domain == domain
    assert ref.path == remote


# --- normalize_test.go: TestNormalizedSplitHostname -----------------------------------------


@pytest.mark.parametrize(
    ("value", "domain", "path"),
    [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("foo", "docker.io", "library/foo"),
        ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ("docker.io/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        ("localhost/foo", "localhost", "foo"),
        ("localhost", "docker.io", "library/localhost"),  # FIXME upstream: bare localhost is a Hub name
        ("index.docker.io/x/y", "docker.io", "x/y"),
    ],
)
def test_split_domain(value: str, domain: str, path: str) -> None:
    ref = parse_normalized(value)
    assert (ref.domain, ref.path) == (domain, path)


def test_reference_with_tag_and_digest() -> None:
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    ref = parse_normalized(short)
    assert str(ref) == "docker.io/library/" + short
    assert ref.tag == "latest" and ref.digest is not None
    assert ref.familiar_string() == short


# --- normalize_test.go: TestParseAnyReference -----------------------------------------------


@pytest.mark.parametrize(
    ("value", "equivalent"),
    [
        ("redis", "docker.io/library/redis"),
        ("redis:latest", "docker.io/library/redis:latest"),
        ("docker.io/library/redis:latest", "docker.io/library/redis:latest"),
        ("redis@sha256:" + DBCC, "docker.io/library/redis@sha256:" + DBCC),
        ("docker.io/library/redis@sha256:" + DBCC, "docker.io/library/redis@sha256:" + DBCC),
        ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
        ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
        ("docker.io/mcgowan/myapp:latest", "docker.io/mcgowan/myapp:latest"),
        ("dmcgowan/myapp@sha256:" + DBCC, "docker.io/dmcgowan/myapp@sha256:" + DBCC),
        ("docker.io/dmcgowan/myapp@sha256:" + DBCC, "docker.io/dmcgowan/myapp@sha256:" + DBCC),
        (DBCC, "sha256:" + DBCC),
        ("sha256:" + DBCC, "sha256:" + DBCC),
        (DBCC[:-1], "docker.io/library/" + DBCC[:-1]),
        ("dbcc1", "docker.io/library/dbcc1"),
    ],
)
def test_parse_any_reference(value: str, equivalent: str) -> None:
    ref = parse_any_reference(value)
    assert str(ref) == equivalent
    assert isinstance(ref, DigestReference) == equivalent.startswith("sha256:")


# --- reference_test.go: TestReferenceParse (no normalisation) -------------------------------
# (input, error or None, repository, domain, tag, digest)
PARSE_CASES: list[tuple[str, str | None, str, str, str | None, str | None]] = [
    ("test_com", None, "test_com", "", None, None),
    ("test.com:tag", None, "test.com", "", "tag", None),
    ("test.com:5000", None, "test.com", "", "5000", None),
    ("test.com/repo:tag", None, "test.com/repo", "test.com", "tag", None),
    ("test:5000/repo", None, "test:5000/repo", "test:5000", None, None),
    ("test:5000/repo:tag", None, "test:5000/repo", "test:5000", "tag", None),
    ("test:5000/repo@" + FFF, None, "test:5000/repo", "test:5000", None, FFF),
    ("test:5000/repo:tag@" + FFF, None, "test:5000/repo", "test:5000", "tag", FFF),
    ("", "repository name must have at least one component", "", "", None, None),
    (":justtag", "invalid reference format", "", "", None, None),
    ("@" + FFF, "invalid reference format", "", "", None, None),
    ("repo@sha256:" + "f" * 34, "invalid checksum digest format", "", "", None, None),
    ("validname@invaliddigest:" + "f" * 64, "unsupported digest algorithm", "", "", None, None),
    ("Uppercase:tag", "repository name must be lowercase", "", "", None, None),
    ("test:5000/Uppercase/lowercase:tag", "repository name must be lowercase", "", "", None, None),
    ("lowercase:Uppercase", None, "lowercase", "", "Uppercase", None),
    ("domain/" + "a" * 256 + ":tag", "repository name must not be more than 255 characters", "", "", None, None),
    ("a/" * 127 + "a:tag-puts-this-over-max", None, "a/" * 127 + "a", "a", "tag-puts-this-over-max", None),
    ("aa/asdf$$^/aa", "invalid reference format", "", "", None, None),
    ("sub-dom1.foo.com/bar/baz/quux", None, "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", None, None),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", None, "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com",
     "some-long-tag", None),
    ("b.gcr.io/test.example.com/my-app:test.example.com", None, "b.gcr.io/test.example.com/my-app", "b.gcr.io",
     "test.example.com", None),
    ("xn--n3h.com/myimage:xn--n3h.com", None, "xn--n3h.com/myimage", "xn--n3h.com", "xn--n3h.com", None),
    ("xn--7o8h.com/myimage:xn--7o8h.com@sha512:" + "f" * 128, None, "xn--7o8h.com/myimage", "xn--7o8h.com",
     "xn--7o8h.com", "sha512:" + "f" * 128),
    ("foo_bar.com:8080", None, "foo_bar.com", "", "8080", None),
    ("foo/foo_bar.com:8080", None, "foo/foo_bar.com", "foo", "8080", None),
    ("192.168.1.1", None, "192.168.1.1", "", None, None),
    ("192.168.1.1:tag", None, "192.168.1.1", "", "tag", None),
    ("192.168.1.1:5000", None, "192.168.1.1", "", "5000", None),
    ("192.168.1.1/repo", None, "192.168.1.1/repo", "192.168.1.1", None, None),
    ("192.168.1.1:5000/repo", None, "192.168.1.1:5000/repo", "192.168.1.1:5000", None, None),
    ("192.168.1.1:5000/repo:5050", None, "192.168.1.1:5000/repo", "192.168.1.1:5000", "5050", None),
    ("[2001:db8::1]", "invalid reference format", "", "", None, None),
    ("[2001:db8::1]:5000", "invalid reference format", "", "", None, None),
    ("[2001:db8::1]:tag", "invalid reference format", "", "", None, None),
    ("[2001:db8::1]/repo", None, "[2001:db8::1]/repo", "[2001:db8::1]", None, None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", None, "[2001:db8:1:2:3:4:5:6]/repo", "[2001:db8:1:2:3:4:5:6]", "tag", None),
    ("[2001:db8::1]:5000/repo", None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, None),
    ("[2001:db8::1]:5000/repo:tag", None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", None),
    ("[2001:db8::1]:5000/repo@" + FFF, None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, FFF),
    ("[2001:db8::1]:5000/repo:tag@" + FFF, None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", FFF),
    ("[2001:db8::]:5000/repo", None, "[2001:db8::]:5000/repo", "[2001:db8::]:5000", None, None),
    ("[::1]:5000/repo", None, "[::1]:5000/repo", "[::1]:5000", None, None),
    ("[fe80::1%eth0]:5000/repo", "invalid reference format", "", "", None, None),
    ("[fe80::1%@invalidzone]:5000/repo", "invalid reference format", "", "", None, None),
    ("example.com/" + "a" * 255 + ":tag", None, "example.com/" + "a" * 255, "example.com", "tag", None),
]  # fmt: skip


@pytest.mark.parametrize(("value", "error", "repository", "domain", "tag", "digest"), PARSE_CASES)
def test_parse(
    value: str, error: str | None, repository: str, domain: str, tag: str | None, digest: str | None
) -> None:
    if error is not None:
        with pytest.raises(InvalidArgument) as exc:
            parse(value)
        assert str(exc.value) == error
        return
    ref = parse(value)
    assert str(ref) == value
    assert (ref.name, ref.domain, ref.tag, ref.digest) == (repository, domain, tag, digest)


# --- the messages the docker CLI prints --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "invalid reference format"),
        ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
        (
            "docker.io/Busybox",
            "invalid reference format: repository name (library/Busybox) must be lowercase",
        ),
        ("user/Image:tag", "invalid reference format: repository name (user/Image) must be lowercase"),
        ("example.com/Foo:tag", "invalid reference format: repository name (Foo) must be lowercase"),
        ("localhost:5000/A/b", "invalid reference format: repository name (A/b) must be lowercase"),
        (HEX, f"invalid repository name ({HEX}), cannot specify 64-byte hexadecimal strings"),
        ("busybox:" + "t" * 129, "invalid reference format"),
        ("busybox:-tag", "invalid reference format"),
        ("busy box", "invalid reference format"),
        ("busybox@sha256:abc", "invalid reference format"),
        ("busybox@sha256:" + "f" * 40, "invalid checksum digest format"),
        ("busybox@sha256:" + "F" * 64, "invalid checksum digest format"),
        ("busybox@foo:" + "f" * 64, "unsupported digest algorithm"),
        ("a" * 248, "repository name must not be more than 255 characters"),
        ("a/" + "b" * 256, "repository name must not be more than 255 characters"),
    ],
)
def test_docker_error_messages(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_normalized(value)
    assert str(exc.value) == message


def test_name_length_boundary_counts_the_library_prefix() -> None:
    assert len(parse_normalized("a" * 247).path) == 255  # "library/" + 247
    assert parse_normalized("busybox:" + "t" * 128).tag == "t" * 128


# --- the brief's examples and the Reference API ----------------------------------------------


def test_busybox_normalises_to_latest_on_docker_hub() -> None:
    ref = parse_normalized("busybox")
    assert ref == Reference("docker.io", "library/busybox", None, None)
    assert str(ref.with_default_tag()) == "docker.io/library/busybox:latest"
    assert ref.with_default_tag().familiar_string() == "busybox:latest"
    assert ref.name == "docker.io/library/busybox"
    assert ref.familiar_name == "busybox"


def test_local_registry_keeps_domain_path_tag_and_digest() -> None:
    ref = parse_normalized("localhost:5000/a/b:t@" + FFF)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("localhost:5000", "a/b", "t", FFF)
    assert ref.familiar_name == "localhost:5000/a/b"
    assert ref.familiar_string() == str(ref) == "localhost:5000/a/b:t@" + FFF
    assert ref.with_default_tag() is ref


@pytest.mark.parametrize(
    ("value", "full", "familiar"),
    [
        ("Foo/bar", "Foo/bar", "Foo/bar"),
        ("docker.io/busybox", "docker.io/library/busybox", "busybox"),
        ("index.docker.io/x/y", "docker.io/x/y", "x/y"),
        ("example.com:5000/repo", "example.com:5000/repo", "example.com:5000/repo"),
        ("[::1]:5000/repo:tag", "[::1]:5000/repo:tag", "[::1]:5000/repo:tag"),
        ("user/x", "docker.io/user/x", "user/x"),
        ("docker.io/library/a/b", "docker.io/library/a/b", "library/a/b"),
    ],
)
def test_normalised_and_familiar_strings(value: str, full: str, familiar: str) -> None:
    ref = parse_normalized(value)
    assert str(ref) == full
    assert ref.familiar_string() == familiar


def test_with_tag_and_with_digest() -> None:
    ref = parse_normalized("test.com:8000/foo")
    assert str(ref.with_tag("TAG5")) == "test.com:8000/foo:TAG5"
    both = ref.with_digest("sha256:1234567890098765432112345667890098765").with_tag("TAG5")
    assert str(both) == "test.com:8000/foo:TAG5@sha256:1234567890098765432112345667890098765"
    assert both.trim() == ref
    with pytest.raises(InvalidArgument, match="^invalid tag format$"):
        ref.with_tag("-foo")
    with pytest.raises(InvalidArgument, match="^invalid digest format$"):
        ref.with_digest("foo")


def test_parse_docker_ref_keeps_either_tag_or_digest() -> None:
    assert str(parse_docker_ref("busybox")) == "docker.io/library/busybox:latest"
    assert str(parse_docker_ref("busybox:1.36")) == "docker.io/library/busybox:1.36"
    assert str(parse_docker_ref("busybox:latest@" + FFF)) == "docker.io/library/busybox@" + FFF


def test_references_are_hashable_values() -> None:
    assert parse_normalized("busybox") == parse_normalized("docker.io/library/busybox")
    assert len({parse_normalized("busybox"), parse_normalized("index.docker.io/library/busybox")}) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a", True),
        ("abc123", True),
        (DBCC, True),
        ("sha256:" + DBCC, True),
        ("sha256:dbcc", True),
        ("", False),
        ("sha256:", False),
        ("ABC", False),
        ("xyz", False),
        (DBCC + "0", False),
        ("sha512:abc", False),
        ("busybox", False),
    ],
)
def test_looks_like_image_id(value: str, expected: bool) -> None:
    assert looks_like_image_id(value) is expected


@pytest.mark.parametrize("name", ["team/app", "app", "localhost:5000/a/b", "a.b/c-d/e__f"])
def test_validate_repository_name_accepts(name: str) -> None:
    assert validate_repository_name(name) == name


@pytest.mark.parametrize("name", ["", "a/B", "app:tag", "a//b", "../etc", "a/" + "b" * 256])
def test_validate_repository_name_rejects(name: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_repository_name(name)


@pytest.mark.parametrize(
    "hostile",
    [
        "a" * 100_000 + "!",
        "a-" * 50_000 + "!",
        "a." * 50_000,
        "[" + ":" * 50_000,
        "x/" + "a__" * 30_000 + "-",
    ],
)
def test_hostile_input_is_rejected_quickly(hostile: str) -> None:
    start = time.perf_counter()
    with pytest.raises(InvalidArgument):
        parse_normalized(hostile)
    assert time.perf_counter() - start < 2.0
