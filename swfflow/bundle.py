"""Bundles: how several files (or none) travel as the one file JEDI registers per output port
and job — an uncompressed tar whose first member is a manifest (name, adler32, size of each
file, in order). ``swfflow job`` writes them for its outputs and unpacks them again when a
later task reads one, so a consumer sees the files, never the tar."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swfflow.checksum import adler32_file
from swfflow.errors import ConfigError

BUNDLE_MANIFEST = ".swfflow-bundle.json"


def is_bundle(path: Path) -> bool:
    if not tarfile.is_tarfile(path):
        return False
    with tarfile.open(path) as tar:
        first = tar.next()
        return first is not None and first.name == BUNDLE_MANIFEST


def unpack_bundle(path: Path, dest: Path) -> list[Path] | None:
    """The files of a bundle, extracted under ``dest`` in manifest order; None if ``path`` is
    an ordinary file."""
    if not is_bundle(path):
        return None
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile(BUNDLE_MANIFEST))
        names = [entry["name"] for entry in manifest["files"]]
        for name in names:  # only the manifest's plain names: nothing escapes dest
            if "/" in name or name in ("", ".", ".."):
                raise ConfigError(f"bundle {path.name} holds a bad member name {name!r}",
                                  where="swfflow job")
            tar.extract(name, dest, filter="data")
    return [dest / name for name in names]


def bundle_members(path: Path) -> list[Path] | None:
    """The files of a bundle unpacked next to it (``NAME.members/``, once; concurrent callers
    share it), in manifest order; None if ``path`` is an ordinary file."""
    if not is_bundle(path):
        return None
    dest = path.with_name(path.name + ".members")
    if not dest.is_dir():
        part = path.with_name(f"{path.name}.members.{os.getpid()}.{threading.get_ident()}")
        shutil.rmtree(part, ignore_errors=True)
        unpack_bundle(path, part)
        try:
            part.rename(dest)
        except OSError:  # unpacked meanwhile by another thread or process
            shutil.rmtree(part, ignore_errors=True)
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile(BUNDLE_MANIFEST))
    return [dest / entry["name"] for entry in manifest["files"]]


def write_bundle(paths: list[Path], target: Path) -> list[str]:
    """An uncompressed tar: the manifest (name, adler32, size of each file) first, then the
    files under unique plain names, in order. The member names, in the order of ``paths``."""
    entries, seen = [], set()
    for i, path in enumerate(paths):
        name = path.name if path.name not in seen and path.name != BUNDLE_MANIFEST \
            else f"{i:04d}.{path.name}"
        seen.add(name)
        entries.append({"name": name, "adler32": adler32_file(path),
                        "size": path.stat().st_size, "path": path})
    manifest = json.dumps({"files": [{k: v for k, v in e.items() if k != "path"}
                                     for e in entries]}, indent=1).encode()
    tmp = target.with_name(target.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(BUNDLE_MANIFEST)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for entry in entries:
            tar.add(entry["path"], arcname=entry["name"], recursive=False)
    tmp.replace(target)
    return [entry["name"] for entry in entries]


# --- the output object of a job report ------------------------------------------------------
# A job's CWL output object travels in its report (swfflow-job.json, in the job's log tarball)
# with each file named by where the job placed it: ``NAME`` (the file JEDI registers for the
# port) or ``NAME#MEMBER`` (a member of that bundle). Whoever reads the report (the driver)
# turns the references back into locations it can read.
MEMBER_SEP = "#"


def placed_reference(name: str, member: str | None = None) -> str:
    return name if member is None else f"{name}{MEMBER_SEP}{member}"


def split_reference(reference: str) -> tuple[str, str | None]:
    name, sep, member = reference.partition(MEMBER_SEP)
    return name, (member if sep else None)


def map_file_locations(value: Any, relocate: Callable[[str], str | None]) -> Any:
    """``value`` with each File's location replaced by ``relocate(location)`` (secondary
    files too); a location ``relocate`` does not know (None) is kept."""
    if isinstance(value, list):
        return [map_file_locations(v, relocate) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get("class") == "File":
        found = relocate(str(value.get("location", "")))
        out = {k: v for k, v in value.items() if k != "path"}
        if found is not None:
            out["location"] = found
        if "secondaryFiles" in value:
            out["secondaryFiles"] = map_file_locations(value["secondaryFiles"], relocate)
        return out
    return {k: map_file_locations(v, relocate) for k, v in value.items()}
