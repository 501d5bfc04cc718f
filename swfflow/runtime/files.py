"""CWL File/Directory values: absolute locations and the fields expressions may read."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

# one resolver of File locations for job objects and defaults, shared with the front end
from swfflow.frontends.cwl_loader import absolute_locations

__all__ = ["absolute_locations", "describe_files", "location_path"]


def location_path(location: str) -> Path:
    """The local path of a ``file://`` URI or a plain path."""
    parsed = urlparse(location)
    return Path(unquote(parsed.path) if parsed.scheme == "file" else location)


def describe_files(value: Any) -> Any:
    """Fill in what CWL expressions may read of an input File before any tool stages it:
    basename, nameroot, nameext (cwltool's own normalisation) and the size of local files."""
    from cwltool.process import normalizeFilesDirs

    if isinstance(value, dict) and value.get("class") == "File":
        value = dict(value)
        normalizeFilesDirs(value)
        location = str(value.get("location", ""))
        path = location_path(location) if location.startswith("file:") else None
        if path is not None and path.is_file():
            value.setdefault("size", path.stat().st_size)
        if "secondaryFiles" in value:
            value["secondaryFiles"] = describe_files(value["secondaryFiles"])
        return value
    if isinstance(value, dict):
        return {k: describe_files(v) for k, v in value.items()}
    if isinstance(value, list):
        return [describe_files(v) for v in value]
    return value
