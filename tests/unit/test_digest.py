"""Digests: computing them, and accepting exactly what go-digest accepts (with its messages)."""

from __future__ import annotations

import hashlib

import pytest

from dockyard.errors import InvalidArgument
from dockyard.oci.digest import (
    Digester,
    digest_algorithm,
    digest_hex,
    is_digest,
    sha256_digest,
    short_id,
    validate_digest,
)

EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HEX64 = "e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b"
HEX128 = "f" * 128


def test_sha256_digest_of_known_inputs() -> None:
    assert sha256_digest(b"") == EMPTY_SHA256
    assert sha256_digest(b"hello") == "sha256:" + hashlib.sha256(b"hello").hexdigest()


def test_digester_is_incremental_and_counts_bytes() -> None:
    d = Digester()
    assert d.digest == EMPTY_SHA256 and d.size == 0
    for chunk in (b"hel", b"", b"lo wor", b"ld"):
        d.update(chunk)
    assert d.digest == sha256_digest(b"hello world")
    assert d.size == 11


def test_digester_sha512() -> None:
    d = Digester("sha512")
    d.update(b"abc")
    assert d.digest == "sha512:" + hashlib.sha512(b"abc").hexdigest()
    validate_digest(d.digest)


def test_digester_rejects_unsupported_algorithm() -> None:
    with pytest.raises(InvalidArgument, match="unsupported digest algorithm"):
        Digester("md5")


@pytest.mark.parametrize("value", ["sha256:" + HEX64, "sha512:" + HEX128, EMPTY_SHA256])
def test_valid_digests(value: str) -> None:
    assert validate_digest(value) == value
    assert is_digest(value)


# The error table of go-digest's TestParseDigest (ErrDigestInvalidLength is now the same error).
FORMAT = "invalid checksum digest format"
UNSUPPORTED = "unsupported digest algorithm"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", FORMAT),
        ("     ", FORMAT),
        ("sha256:", FORMAT),
        ("sha256:" + " " * 64, FORMAT),
        (":", FORMAT),
        ("d41d8cd98f00b204e9800998ecf8427e", FORMAT),
        ("sha256:d41d8cd98f00b204e9800m98ecf8427e", FORMAT),
        ("sha256:abcdef0123456789", FORMAT),
        ("sha512:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789", FORMAT),
        ("foo:d41d8cd98f00b204e9800998ecf8427e", UNSUPPORTED),
        ("sha384__foo+bar:" + "d3" * 48, FORMAT),
        ("sha384.foo+bar:" + "d3" * 48, UNSUPPORTED),
        ("sha256+b64:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", UNSUPPORTED),
        ("sha256:" + HEX64.upper(), FORMAT),
        ("sha256:" + HEX64 + "0", FORMAT),
        ("SHA256:" + HEX64, FORMAT),
    ],
)
def test_invalid_digests(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_digest(value)
    assert str(exc.value) == message
    assert not is_digest(value)


def test_non_string_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match=FORMAT):
        validate_digest(None)  # type: ignore[arg-type]


def test_parts_and_short_id() -> None:
    d = "sha256:" + HEX64
    assert digest_algorithm(d) == "sha256"
    assert digest_hex(d) == HEX64
    assert short_id(d) == HEX64[:12] == "e58fcf7418d4"
    assert short_id(HEX64) == "e58fcf7418d4"
    with pytest.raises(InvalidArgument):
        digest_hex("sha256:nothex")
