"""Media types of OCI and Docker schema 2 content, and what each one means.

A blob's media type (in its descriptor, or the ``Content-Type`` of a registry response) is the
only thing that says whether it is a manifest, an index, a config or a layer, and how a layer
is compressed.  Both families are in use: Docker Hub still serves many images as Docker
schema 2, ``docker buildx`` and ``oras`` write OCI.  The helpers accept both so that callers
never compare media-type strings themselves.

Encrypted layer types (``+encrypted``, ocicrypt) are recognised as layers; their
:func:`layer_compression` describes the plaintext, so check :func:`is_encrypted` first.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "is_config",
    "is_encrypted",
    "is_index",
    "is_layer",
    "is_manifest",
    "is_non_distributable",
    "layer_compression",
    "normalize",
]

# --- OCI image-spec v1 -------------------------------------------------------------------------
OCI_DESCRIPTOR: Final = "application/vnd.oci.descriptor.v1+json"
OCI_LAYOUT_HEADER: Final = "application/vnd.oci.layout.header.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY_JSON: Final = "application/vnd.oci.empty.v1+json"
# The artifact manifest was in the 1.1 release candidates and dropped from 1.1.0; some old oras
# versions still produce it.  It is named here so it can be recognised and refused: it is not
# in MANIFEST_TYPES because it has no config and no layers.
OCI_ARTIFACT_MANIFEST: Final = "application/vnd.oci.artifact.manifest.v1+json"

OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ENC: Final = "application/vnd.oci.image.layer.v1.tar+encrypted"
OCI_LAYER_GZIP_ENC: Final = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
OCI_LAYER_ZSTD_ENC: Final = "application/vnd.oci.image.layer.v1.tar+zstd+encrypted"
# Non-distributable layers are deprecated by the spec but must still be understood.
OCI_LAYER_NONDIST: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_LAYER_NONDIST_ENC: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar+encrypted"
OCI_LAYER_NONDIST_GZIP_ENC: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip+encrypted"

# --- Docker image manifest v2 (schema 2) -------------------------------------------------------
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD: Final = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_FOREIGN_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG: Final = "application/vnd.docker.plugin.v1+json"
# Schema 1 is recognised only to be refused with a clear message.
DOCKER_MANIFEST_V1: Final = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES: Final = frozenset({OCI_CONFIG, DOCKER_CONFIG})
SCHEMA1_TYPES: Final = frozenset({DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED})

_GZIP: Final = "gzip"
_ZSTD: Final = "zstd"

# Every layer type with the compression of its (plaintext) payload.
_LAYERS: Final[dict[str, str | None]] = {
    OCI_LAYER: None,
    OCI_LAYER_GZIP: _GZIP,
    OCI_LAYER_ZSTD: _ZSTD,
    OCI_LAYER_ENC: None,
    OCI_LAYER_GZIP_ENC: _GZIP,
    OCI_LAYER_ZSTD_ENC: _ZSTD,
    OCI_LAYER_NONDIST: None,
    OCI_LAYER_NONDIST_GZIP: _GZIP,
    OCI_LAYER_NONDIST_ZSTD: _ZSTD,
    OCI_LAYER_NONDIST_ENC: None,
    OCI_LAYER_NONDIST_GZIP_ENC: _GZIP,
    DOCKER_LAYER: None,
    DOCKER_LAYER_GZIP: _GZIP,
    DOCKER_LAYER_ZSTD: _ZSTD,
    DOCKER_FOREIGN_LAYER: None,
    DOCKER_FOREIGN_LAYER_GZIP: _GZIP,
}
LAYER_TYPES: Final = frozenset(_LAYERS)
_NON_DISTRIBUTABLE: Final = frozenset(
    {
        OCI_LAYER_NONDIST,
        OCI_LAYER_NONDIST_GZIP,
        OCI_LAYER_NONDIST_ZSTD,
        OCI_LAYER_NONDIST_ENC,
        OCI_LAYER_NONDIST_GZIP_ENC,
        DOCKER_FOREIGN_LAYER,
        DOCKER_FOREIGN_LAYER_GZIP,
    }
)


def normalize(mt: str | None) -> str:
    """Strip parameters and case from a media type (``Content-Type`` may carry ``; charset``).

    Returns ``""`` for None so callers can compare without a None check.
    """
    if not mt:
        return ""
    return mt.split(";", 1)[0].strip().lower()


def is_manifest(mt: str | None) -> bool:
    """True for a single-image manifest (OCI or Docker schema 2)."""
    return normalize(mt) in MANIFEST_TYPES


def is_index(mt: str | None) -> bool:
    """True for a multi-platform index (OCI index or Docker manifest list)."""
    return normalize(mt) in INDEX_TYPES


def is_config(mt: str | None) -> bool:
    """True for an image config blob (OCI or Docker)."""
    return normalize(mt) in CONFIG_TYPES


def is_layer(mt: str | None) -> bool:
    """True for any filesystem layer type, including encrypted and non-distributable ones."""
    return normalize(mt) in LAYER_TYPES


def is_encrypted(mt: str | None) -> bool:
    """True for ocicrypt layer types, whose bytes cannot be unpacked without a key."""
    return normalize(mt).endswith("+encrypted")


def is_non_distributable(mt: str | None) -> bool:
    """True for layers that must not be pushed (OCI non-distributable, Docker foreign)."""
    return normalize(mt) in _NON_DISTRIBUTABLE


def layer_compression(mt: str | None) -> Literal["gzip", "zstd"] | None:
    """The compression of a layer's payload: ``"gzip"``, ``"zstd"`` or None (plain tar).

    Unknown layer-like types are judged by their suffix (``+gzip``/``.gzip``, ``+zstd``/
    ``.zstd``) so that vendor variants still unpack; other types give None.
    """
    n = normalize(mt)
    if n in _LAYERS:
        found = _LAYERS[n]
    else:
        base = n.removesuffix("+encrypted")
        if base.endswith(("+gzip", ".gzip")):
            found = _GZIP
        elif base.endswith(("+zstd", ".zstd")):
            found = _ZSTD
        else:
            found = None
    if found == _GZIP:
        return "gzip"
    if found == _ZSTD:
        return "zstd"
    return None
