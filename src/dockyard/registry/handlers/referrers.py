"""Referrers: ``GET /v2/<name>/referrers/<digest>[?artifactType=...]`` (spec end-12a/12b).

The answer is an OCI image index of the descriptors of every manifest in the repository whose
``subject`` is ``<digest>``; the descriptors were recorded when those manifests were pushed
(``artifactType`` from the manifest, else its config's media type; annotations copied), so
answering reads one small file per referrer and never a manifest.  The subject itself need not
exist (signatures may be pushed before the image), and an unknown repository or subject is an
empty index, never a 404: a 404 would tell clients this registry lacks the API and send them
to the tag-schema fallback.  ``artifactType`` filtering is applied here and announced with
``OCI-Filters-Applied: artifactType``.
"""

from __future__ import annotations

import json

from aiohttp import web

from dockyard.oci import mediatypes as mt
from dockyard.registry.handlers.context import Call, api_headers
from dockyard.registry.storage.layout import validate_digest_param

__all__ = ["list_referrers"]


async def list_referrers(call: Call) -> web.StreamResponse:
    subject = validate_digest_param(call.params["digest"])
    descriptors = await call.layout.referrers(call.name, subject)
    headers = api_headers()
    artifact_type = call.request.query.get("artifactType")
    if artifact_type:
        descriptors = [d for d in descriptors if d.get("artifactType") == artifact_type]
        headers["OCI-Filters-Applied"] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
    return web.Response(body=json.dumps(body).encode(), headers=headers, content_type=mt.OCI_INDEX)
