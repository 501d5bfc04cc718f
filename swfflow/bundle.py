"""Bundles: how several files (or none) travel as the one file JEDI registers per output port
and job — an uncompressed tar whose first member is a manifest (name, adler32, size of each
file, in order). ``swfflow job`` writes them for its outputs and unpacks them again when a
later task reads one, so a consumer sees the files, never the tar."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

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


def write_bundle(paths: list[Path], target: Path) -> None:
    """An uncompressed tar: the manifest (name, adler32, size of each file) first, then the
    files under unique plain names, in order."""
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
