"""An Azure Blob volume used by containers through `dockyard volume create` and `run -v`, end to end
on Azurite: what a container writes lands in the blob container; a second data root sees it."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from azure.storage.blob import BlobServiceClient

from conftest import Dockyard

pytestmark = pytest.mark.root


def blob_names(azurite, container: str) -> set[str]:
    svc = BlobServiceClient.from_connection_string(azurite.connection_string)
    return {b.name for b in svc.get_container_client(container).list_blobs()}


def test_azure_volume_with_containers(busybox, busybox_archive, azurite, scratch):
    container = "vol" + uuid.uuid4().hex[:12]
    opts = ["-o", f"storage_account_name={azurite.account}", "-o", f"storage_account_key={azurite.key}",
            "-o", f"container={container}", "-o", f"endpoint={azurite.endpoint}"]
    busybox("volume", "create", "--driver", "azureblob", "--name", "azure_volume", *opts)
    info = json.loads(busybox("volume", "inspect", "azure_volume").stdout)[0]
    assert info["Driver"] == "azureblob"
    assert azurite.key not in json.dumps(info)  # the key is masked
    busybox("run", "--rm", "-v", "azure_volume:/data", "busybox", "sh", "-c",
            "echo hello > /data/greeting; mkdir -p /data/sub; echo x > /data/sub/f")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not {"greeting", "sub/f"} <= blob_names(azurite, container):
        time.sleep(0.3)
    assert {"greeting", "sub/f"} <= blob_names(azurite, container)
    # another dockyard root (another machine, say) mounting the same blob container sees the files
    other = Dockyard(scratch / "other")
    other("load", "-i", str(busybox_archive))
    other("volume", "create", "--driver=azurefile", "--name", "azure_volume", "-o", f"share_name={container}",
          "-o", f"storage_account_name={azurite.account}", "-o", f"storage_account_key={azurite.key}",
          "-o", f"endpoint={azurite.endpoint}")
    out = other("run", "--rm", "-v", "azure_volume:/data", "busybox", "cat", "/data/greeting").stdout
    assert out == "hello\n"
    # a bad endpoint: a clear error naming the volume, no record, the key never printed
    p = busybox("volume", "create", "--driver", "azureblob", "--name", "broken",
                "-o", f"storage_account_name={azurite.account}", "-o", f"storage_account_key={azurite.key}",
                "-o", f"container={container}", "-o", "endpoint=http://127.0.0.1:9/devstoreaccount1",
                check=False)
    assert p.returncode != 0 and "broken" in p.stderr and azurite.key not in p.stderr
    assert "broken" not in busybox("volume", "ls", "-q").stdout.split()
