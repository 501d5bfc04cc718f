"""Keeping plan JSON independent of where the checkout lives (pure path helpers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def base_dirs(source_path: str) -> tuple[str, ...]:
    """Prefixes that make plan JSON machine-dependent: the workflow's folder as URI and path."""
    if not source_path:
        return ()
    folder = Path(source_path).resolve().parent
    return (folder.as_uri() + "/", str(folder) + os.sep)


def relative(value: Any, bases: tuple[str, ...]) -> Any:
    """Strip the workflow folder from every string (plan JSON must not depend on where the
    checkout lives); the driver resolves them against the plan's ``source`` folder."""
    if not bases:
        return value
    if isinstance(value, str):
        for base in bases:
            if base in value:
                value = value.replace(base, "")
        return value
    if isinstance(value, dict):
        return {k: relative(v, bases) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [relative(v, bases) for v in value]
    return value


def relative_locations(value: Any, bases: tuple[str, ...]) -> Any:
    """:func:`relative` for values: only the ``location``/``path`` of File and Directory
    objects change; a string parameter that happens to name the folder is the user's and
    stays as it is."""
    if isinstance(value, dict):
        if value.get("class") in ("File", "Directory"):
            return {k: relative(v, bases) if k in ("location", "path") else
                    relative_locations(v, bases) for k, v in value.items()}
        return {k: relative_locations(v, bases) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [relative_locations(v, bases) for v in value]
    return value


def display_path(source_path: str) -> str:
    """The workflow path relative to the working directory when it lies below it (so a plan
    compiled at the top of a checkout names ``examples/calib.cwl`` wherever the checkout is),
    else absolute."""
    if not source_path:
        return ""
    path = Path(source_path).resolve()
    cwd = Path.cwd().resolve()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)
