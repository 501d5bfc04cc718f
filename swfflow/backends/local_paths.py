"""A catalog view for the local executor over a catalog that lists URLs (Rucio)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import unquote, urlparse

from swfflow.backends.base import FileRecord


class LocalPathCatalog:
    """A Catalog whose listed files carry local paths as pfns.

    Rucio hands out ``file://localhost/…`` URLs for posix RSEs, while the local executor builds
    CWL File locations from plain paths; this wrapper converts between them (everything else is
    passed through unchanged)."""

    def __init__(self, catalog: Any):
        self.catalog = catalog

    def __getattr__(self, name: str) -> Any:
        return getattr(self.catalog, name)

    def list_files(self, did: str) -> list[FileRecord]:
        return [replace(f, pfn=local_path(f.pfn)) for f in self.catalog.list_files(did)]


def local_path(pfn: str | None) -> str | None:
    """A ``file://`` URL as a plain path; anything else as it is."""
    if pfn is None or not pfn.startswith("file://"):
        return pfn
    return unquote(urlparse(pfn).path)
