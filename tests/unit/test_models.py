"""OCI / Docker models: lossless round-trips, kind detection, shape errors, schema validity."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from dockyard.errors import InvalidArgument
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import sha256_digest
from dockyard.oci.models import (
    ContainerConfig,
    Descriptor,
    HealthConfig,
    History,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    RootFS,
    canonical_json,
    parse_manifest_or_index,
)

try:  # `python -m pytest` puts the repo root on sys.path; bare `pytest` only tests/ (via conftest.py)
    from tests.helpers import ocischema
except ModuleNotFoundError:  # pragma: no cover
    from helpers import ocischema  # type: ignore[no-redef]

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64
D3 = "sha256:" + "c" * 64

OCI_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "config": {"mediaType": mt.OCI_CONFIG, "digest": D1, "size": 1469},
    "layers": [
        {"mediaType": mt.OCI_LAYER_GZIP, "digest": D2, "size": 2479},
        {
            "mediaType": mt.OCI_LAYER_NONDIST_GZIP,
            "digest": D3,
            "size": 10,
            "urls": ["https://example.com/layer"],
            "annotations": {"org.opencontainers.image.title": "x.tar.gz"},
        },
    ],
    "subject": {"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 7},
    "annotations": {"com.example.key": "value"},
}

DOCKER_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST,
    "config": {"mediaType": mt.DOCKER_CONFIG, "size": 1472, "digest": D1},
    "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP, "size": 3370706, "digest": D2}],
}

OCI_INDEX = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": D1,
            "size": 480,
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": D2,
            "size": 566,
            "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": D1},
            "platform": {"architecture": "unknown", "os": "unknown"},
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": D3,
            "size": 1,
            "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1040",
                         "os.features": ["win32k"]},
            "artifactType": "application/vnd.example+type",
            "data": "e30=",
        },
    ],
}  # fmt: skip

DOCKER_LIST = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST_LIST,
    "manifests": [
        {
            "mediaType": mt.DOCKER_MANIFEST,
            "size": 528,
            "digest": D1,
            "platform": {"architecture": "amd64", "os": "linux"},
        }
    ],
}

# A config as `docker build` writes it: Go zero values, explicit nulls, keys OCI does not define.
DOCKER_CONFIG = {
    "architecture": "amd64",
    "config": {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "ExposedPorts": {"80/tcp": {}},
        "Tty": False,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Healthcheck": {
            "Test": ["CMD-SHELL", "curl -f http://localhost/"],
            "Interval": 30000000000,
            "Retries": 3,
        },
        "ArgsEscaped": True,
        "Image": "",
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": ["/docker-entrypoint.sh"],
        "OnBuild": None,
        "Labels": {"maintainer": "NGINX Docker Maintainers <docker-maint@nginx.com>"},
        "StopSignal": "SIGQUIT",
        "Shell": ["/bin/sh", "-c"],
    },
    "container": "3a5b",
    "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) "]},
    "created": "2023-08-16T03:29:31.123456789Z",
    "docker_version": "20.10.23",
    "history": [
        {"created": "2023-08-16T03:29:30Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
        {
            "created": "2023-08-16T03:29:31Z",
            "created_by": '/bin/sh -c #(nop)  CMD ["bash"]',
            "empty_layer": True,
        },
    ],
    "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
}


@pytest.mark.parametrize(
    ("doc", "cls"),
    [
        (OCI_MANIFEST, Manifest),
        (DOCKER_MANIFEST, Manifest),
        (OCI_INDEX, Index),
        (DOCKER_LIST, Index),
        (DOCKER_CONFIG, ImageConfig),
        (OCI_MANIFEST["layers"][1], Descriptor),  # type: ignore[index]
        (OCI_INDEX["manifests"][2]["platform"], Platform),  # type: ignore[index]
    ],
)
def test_round_trip_is_lossless(doc: dict[str, Any], cls: Any) -> None:
    original = copy.deepcopy(doc)
    model = cls.from_dict(doc)
    assert model.to_dict() == original
    assert doc == original  # the input was not mutated
    assert cls.from_dict(json.loads(canonical_json(model))).to_dict() == original


def test_typed_access_to_a_docker_config() -> None:
    cfg = ImageConfig.from_dict(DOCKER_CONFIG)
    assert cfg.architecture == "amd64" and cfg.os == "linux"
    assert cfg.created == "2023-08-16T03:29:31.123456789Z"  # nanoseconds kept verbatim
    assert cfg.config is not None
    assert cfg.config.cmd == ["nginx", "-g", "daemon off;"]
    assert cfg.config.exposed_ports == {"80/tcp": {}}
    assert cfg.config.volumes is None and cfg.config.extra["Volumes"] is None
    assert cfg.config.healthcheck == HealthConfig(test=["CMD-SHELL", "curl -f http://localhost/"],
                                                  interval=30_000_000_000, retries=3)  # fmt: skip
    assert cfg.config.shell == ["/bin/sh", "-c"]
    assert cfg.config.extra["Hostname"] == ""
    assert cfg.rootfs.diff_ids == [D1, D2]
    assert cfg.history is not None and cfg.history[1].empty_layer is True
    assert cfg.extra["docker_version"] == "20.10.23"


def test_setting_a_field_overrides_a_preserved_null() -> None:
    cfg = ImageConfig.from_dict(DOCKER_CONFIG)
    assert cfg.config is not None
    cfg.config.volumes = {"/data": {}}
    assert cfg.to_dict()["config"]["Volumes"] == {"/data": {}}


def test_manifest_fields() -> None:
    m = Manifest.from_dict(OCI_MANIFEST)
    assert m.config.digest == D1 and m.config.size == 1469
    assert [layer.media_type for layer in m.layers] == [mt.OCI_LAYER_GZIP, mt.OCI_LAYER_NONDIST_GZIP]
    assert m.layers[1].urls == ["https://example.com/layer"]
    assert m.subject is not None and m.subject.size == 7


def test_index_platforms() -> None:
    idx = Index.from_dict(OCI_INDEX)
    assert [str(d.platform) for d in idx.manifests] == ["linux/arm64/v8", "unknown/unknown", "windows/amd64"]
    assert idx.manifests[2].platform is not None
    assert idx.manifests[2].platform.os_features == ["win32k"]
    assert idx.manifests[2].artifact_type == "application/vnd.example+type"


def test_key_order_is_go_struct_order_and_maps_are_sorted() -> None:
    m = Manifest(
        config=Descriptor(mt.OCI_CONFIG, D1, 2),
        layers=[Descriptor(mt.OCI_LAYER_GZIP, D2, 3, annotations={"z": "1", "a": "2"})],
        annotations={"b": "x", "a": "y"},
    )
    assert canonical_json(m) == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
        + D1.encode()
        + b'","size":2},'
        b'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"'
        + D2.encode()
        + b'",'
        b'"size":3,"annotations":{"a":"2","z":"1"}}],"annotations":{"a":"y","b":"x"}}'
    )


def test_canonical_json_escapes_like_go_and_keeps_utf8() -> None:
    out = canonical_json({"k": "<a & b> é \u2028"})
    assert out == '{"k":"\\u003ca \\u0026 b\\u003e é \\u2028"}'.encode()
    assert json.loads(out) == {"k": "<a & b> é \u2028"}


def test_canonical_json_is_deterministic() -> None:
    cfg = ImageConfig.from_dict(DOCKER_CONFIG)
    assert canonical_json(cfg) == canonical_json(ImageConfig.from_dict(json.loads(canonical_json(cfg))))
    assert sha256_digest(canonical_json(cfg)) == sha256_digest(canonical_json(cfg))


def test_descriptor_for_content() -> None:
    d = Descriptor.for_content(mt.OCI_EMPTY_JSON, b"{}")
    assert d.to_dict() == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
    }


# --- parse_manifest_or_index: detection -----------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "media_type", "cls"),
    [
        (OCI_MANIFEST, None, Manifest),
        (OCI_MANIFEST, mt.OCI_MANIFEST, Manifest),
        (OCI_MANIFEST, "application/vnd.oci.image.manifest.v1+json; charset=utf-8", Manifest),
        (OCI_MANIFEST, "application/json", Manifest),
        (DOCKER_MANIFEST, mt.DOCKER_MANIFEST, Manifest),
        (OCI_INDEX, None, Index),
        (OCI_INDEX, "application/octet-stream", Index),
        (DOCKER_LIST, mt.DOCKER_MANIFEST_LIST, Index),
        ({k: v for k, v in OCI_MANIFEST.items() if k != "mediaType"}, None, Manifest),
        ({k: v for k, v in OCI_MANIFEST.items() if k != "mediaType"}, mt.OCI_MANIFEST, Manifest),
        ({k: v for k, v in OCI_INDEX.items() if k != "mediaType"}, None, Index),
    ],
)
def test_detects_the_kind(doc: dict[str, Any], media_type: str | None, cls: type[Manifest | Index]) -> None:
    parsed = parse_manifest_or_index(json.dumps(doc).encode(), media_type)
    assert isinstance(parsed, cls)
    assert parsed.to_dict() == doc


@pytest.mark.parametrize(
    ("data", "media_type", "message"),
    [
        (b"{not json", None, "invalid manifest JSON"),
        (b"\xff\xfe", None, "invalid manifest JSON"),
        (b"[]", None, "expected a JSON object, got array"),
        (b'"x"', None, "expected a JSON object, got string"),
        (json.dumps(OCI_MANIFEST).encode(), mt.OCI_INDEX,
         f"if present, mediaType in image index should be '{mt.OCI_INDEX}' not '{mt.OCI_MANIFEST}'"),
        (json.dumps(OCI_INDEX).encode(), mt.DOCKER_MANIFEST,
         f"if present, mediaType in manifest should be '{mt.DOCKER_MANIFEST}' not '{mt.OCI_INDEX}'"),
        (json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}).encode(), None, "schema 1"),
        (b"{}", mt.DOCKER_MANIFEST_V1_SIGNED, "schema 1"),
        (json.dumps({"mediaType": mt.OCI_ARTIFACT_MANIFEST, "blobs": []}).encode(), None, "unsupported manifest media type"),
        (json.dumps({"schemaVersion": 2, "mediaType": "application/x-foo"}).encode(), None, "unsupported manifest media type"),
        (b'{"schemaVersion": 2}', None, "neither a manifest nor an index"),
        (json.dumps({**OCI_MANIFEST, "schemaVersion": 3}).encode(), None, "unsupported schemaVersion 3"),
        (json.dumps({**OCI_MANIFEST, "schemaVersion": "2"}).encode(), None, "manifest.schemaVersion: expected integer"),
        (json.dumps({k: v for k, v in OCI_MANIFEST.items() if k != "schemaVersion"}).encode(), None,
         "missing required field 'schemaVersion'"),
        (json.dumps({**OCI_MANIFEST, "layers": None}).encode(), None, "missing required field 'layers'"),
        (json.dumps({**OCI_MANIFEST, "layers": {}}).encode(), None, "manifest.layers: expected array, got object"),
        (json.dumps({**OCI_MANIFEST, "config": []}).encode(), None, "manifest.config: expected a JSON object"),
        (json.dumps({**OCI_MANIFEST, "annotations": {"a": 1}}).encode(), None, "manifest.annotations: expected object of strings"),
        (json.dumps({**OCI_MANIFEST, "mediaType": 5}).encode(), None, "mediaType: expected string"),
        (json.dumps({**OCI_INDEX, "manifests": None}).encode(), mt.OCI_INDEX, "missing required field 'manifests'"),
        (json.dumps({**OCI_INDEX, "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": D1}]}).encode(), None,
         "index.manifests[0]: missing required field 'size'"),
    ],
)  # fmt: skip
def test_rejects_bad_documents(data: bytes, media_type: str | None, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_manifest_or_index(data, media_type)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("descriptor", "message"),
    [
        ({"mediaType": mt.OCI_LAYER, "digest": "sha256:abc", "size": 1}, "descriptor.digest: invalid checksum digest format"),
        ({"mediaType": mt.OCI_LAYER, "digest": "md5:" + "a" * 32, "size": 1}, "unsupported digest algorithm"),
        ({"mediaType": mt.OCI_LAYER, "digest": D1, "size": -1}, "descriptor.size: must not be negative"),
        ({"mediaType": mt.OCI_LAYER, "digest": D1, "size": "1"}, "descriptor.size: expected integer, got string"),
        ({"mediaType": mt.OCI_LAYER, "digest": D1, "size": True}, "expected integer, got boolean"),
        ({"mediaType": mt.OCI_LAYER, "digest": D1, "size": 1.5}, "expected integer, got number"),
        ({"digest": D1, "size": 1}, "missing required field 'mediaType'"),
        ({"mediaType": mt.OCI_LAYER, "digest": D1, "size": 1, "urls": "x"}, "descriptor.urls: expected array of strings"),
        ({"mediaType": mt.OCI_LAYER, "digest": D1, "size": 1, "platform": "linux"}, "descriptor.platform: expected a JSON object"),
        ({"mediaType": mt.OCI_LAYER, "digest": D1, "size": 1, "platform": {"os": 1}}, "descriptor.platform.os: expected string"),
    ],
)  # fmt: skip
def test_descriptor_shape_errors(descriptor: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        Descriptor.from_dict(descriptor)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"architecture": "amd64", "os": "linux"}, "invalid image JSON, no RootFS key"),
        (
            {**DOCKER_CONFIG, "rootfs": {"type": "layers", "diff_ids": ["nope"]}},
            "image config.rootfs.diff_ids[0]",
        ),
        (
            {**DOCKER_CONFIG, "config": {"Env": "PATH=/bin"}},
            "image config.config.Env: expected array of strings",
        ),
        ({**DOCKER_CONFIG, "config": {"ExposedPorts": {"80/tcp": True}}}, "expected object of objects"),
        (
            {**DOCKER_CONFIG, "config": {"Healthcheck": {"Retries": "3"}}},
            "config.Healthcheck.Retries: expected integer",
        ),
        (
            {**DOCKER_CONFIG, "history": [{"empty_layer": "yes"}]},
            "image config.history[0].empty_layer: expected boolean",
        ),
        ({**DOCKER_CONFIG, "history": {}}, "image config.history: expected array"),
    ],
)
def test_config_shape_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        ImageConfig.from_dict(doc)
    assert message in str(exc.value)


# --- JSON-schema validity of what we write -----------------------------------------------------

# The schemas live in ../shared/reference (DOCKYARD_SHARED); without them these tests fail, never skip.


def _built_config() -> ImageConfig:
    return ImageConfig(
        architecture="arm64",
        os="linux",
        variant="v8",
        created="2024-01-02T03:04:05Z",
        author="dockyard",
        config=ContainerConfig(
            user="1000:1000",
            exposed_ports={"8080/tcp": {}},
            env=["PATH=/bin"],
            entrypoint=["/app"],
            cmd=None,
            volumes={"/data": {}},
            working_dir="/srv",
            labels={"b": "2", "a": "1"},
            stop_signal="SIGTERM",
            args_escaped=False,
        ),
        rootfs=RootFS(diff_ids=[D1]),
        history=[History(created="2024-01-02T03:04:05Z", created_by="COPY app /app")],
    )


@pytest.mark.parametrize(
    ("model", "schema"),
    [
        (Manifest.from_dict(OCI_MANIFEST), ocischema.MANIFEST),
        (Manifest(config=Descriptor(mt.OCI_CONFIG, D1, 10), layers=[Descriptor(mt.OCI_LAYER_ZSTD, D2, 20)]),
         ocischema.MANIFEST),
        (Manifest.from_dict(DOCKER_MANIFEST), ocischema.MANIFEST),
        (Index.from_dict(OCI_INDEX), ocischema.INDEX),
        (Index(manifests=[Descriptor(mt.OCI_MANIFEST, D1, 5, platform=Platform("amd64", "linux"))]), ocischema.INDEX),
        (ImageConfig.from_dict(DOCKER_CONFIG), ocischema.CONFIG),
        (_built_config(), ocischema.CONFIG),
        (Descriptor.for_content(mt.OCI_EMPTY_JSON, b"{}", annotations={"k": "v"}), ocischema.DESCRIPTOR),
    ],
)  # fmt: skip
def test_to_dict_validates_against_the_oci_schemas(model: Any, schema: str) -> None:
    assert ocischema.errors(model.to_dict(), schema) == []


def test_schema_helper_catches_errors_through_refs() -> None:
    bad = Manifest.from_dict(OCI_MANIFEST).to_dict()
    bad["layers"][0]["digest"] = "not a digest"
    bad["layers"][0]["annotations"] = {"k": 1}
    found = ocischema.errors(bad, ocischema.MANIFEST)
    assert any(e.startswith("layers/0/digest:") for e in found)
    assert any(e.startswith("layers/0/annotations/k:") for e in found)
    index = Index.from_dict(OCI_INDEX).to_dict()
    del index["manifests"][0]["platform"]["os"]
    assert ocischema.errors(index, ocischema.INDEX) == ["manifests/0/platform: 'os' is a required property"]


# --- media types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "manifest", "index", "layer", "compression"),
    [
        (mt.OCI_MANIFEST, True, False, False, None),
        (mt.DOCKER_MANIFEST, True, False, False, None),
        (mt.OCI_INDEX, False, True, False, None),
        (mt.DOCKER_MANIFEST_LIST + "; charset=utf-8", False, True, False, None),
        (mt.OCI_ARTIFACT_MANIFEST, False, False, False, None),
        (mt.OCI_CONFIG, False, False, False, None),
        (mt.OCI_LAYER, False, False, True, None),
        (mt.OCI_LAYER_GZIP, False, False, True, "gzip"),
        (mt.OCI_LAYER_ZSTD, False, False, True, "zstd"),
        (mt.OCI_LAYER_NONDIST_ZSTD, False, False, True, "zstd"),
        (mt.OCI_LAYER_GZIP_ENC, False, False, True, "gzip"),
        (mt.DOCKER_LAYER_GZIP, False, False, True, "gzip"),
        (mt.DOCKER_FOREIGN_LAYER_GZIP, False, False, True, "gzip"),
        (mt.DOCKER_LAYER, False, False, True, None),
        ("application/vnd.example.layer.v1.tar+zstd", False, False, False, "zstd"),
        (None, False, False, False, None),
    ],
)
def test_media_type_helpers(
    media_type: str | None, manifest: bool, index: bool, layer: bool, compression: str | None
) -> None:
    assert mt.is_manifest(media_type) is manifest
    assert mt.is_index(media_type) is index
    assert mt.is_layer(media_type) is layer
    assert mt.layer_compression(media_type) == compression


def test_encrypted_and_non_distributable() -> None:
    assert mt.is_encrypted(mt.OCI_LAYER_ZSTD_ENC) and not mt.is_encrypted(mt.OCI_LAYER_ZSTD)
    assert mt.is_non_distributable(mt.DOCKER_FOREIGN_LAYER) and not mt.is_non_distributable(
        mt.DOCKER_LAYER_GZIP
    )
    assert mt.is_config(mt.DOCKER_CONFIG) and mt.is_config(mt.OCI_CONFIG)
