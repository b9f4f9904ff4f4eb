"""Options and reports of the facade's image side (``dockyard images``, ``rmi``, ``image prune``,
``history``, ``import``, ``save`` and the API's /images).  Apart from :mod:`dockyard.engine.options`
so that the container commands (``dockyard run`` above all) do not build these classes at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.engine.options import Filters


@dataclass
class ImageListOptions:
    all: bool = False
    filters: Filters = field(default_factory=Filters)


@dataclass
class ImageSummary:
    id: str
    repo_tags: list[str]                 # familiar "busybox:latest"
    repo_digests: list[str]              # familiar "busybox@sha256:..."
    created: float                       # seconds since the epoch
    size: int
    labels: dict[str, str]
    parent: str
    containers: int


@dataclass
class ImageRemoveOptions:
    force: bool = False
    prune: bool = True


@dataclass
class ImageDeleteItem:
    untagged: str | None = None
    deleted: str | None = None


@dataclass
class ImagePruneOptions:
    all: bool = False
    filters: Filters = field(default_factory=Filters)


@dataclass
class ImagePruneReport:
    items: list[ImageDeleteItem]
    reclaimed: int


@dataclass
class HistoryEntry:
    id: str                              # image ID for the top entry, "<missing>" otherwise
    created: float
    created_by: str
    size: int
    comment: str
    tags: list[str]


@dataclass
class ImportOptions:
    reference: str | None = None
    changes: list[str] = field(default_factory=list)
    message: str = ""
    platform: str | None = None
    source_name: str = "-"               # shown in the history comment: "Imported from -"


@dataclass
class SaveOptions:
    names: list[str]
    format: str = "docker-archive"       # docker-archive | oci-archive | oci-dir
