"""Front ends: read a workflow document into the IR. Pure (no network, no clock).

:func:`load_any` picks the front end from the file name; every caller (compile, dag, run,
submit, bridge) goes through it so they all accept the same files.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from swfflow.errors import ConfigError, UnsupportedFeature, WorkflowError
from swfflow.ir import Workflow

# how a file is recognised → "module:function" that loads it into the IR
_FRONT_ENDS: list[tuple[str, str]] = [
    ("cwl", "swfflow.frontends.cwl:load_workflow"),
    ("snakemake", "swfflow.frontends.snakemake:load_workflow"),
]


def kind_of(path: str | os.PathLike) -> str:
    """"cwl", "snakemake" or "plan" (a compiled plan.json), from the file name."""
    p = Path(path)
    if p.suffix in (".cwl", ".yml", ".yaml"):
        return "cwl"
    if p.name == "Snakefile" or p.suffix in (".smk", ".snakefile"):
        return "snakemake"
    if p.suffix == ".json":
        return "plan"
    raise WorkflowError(f"cannot tell what kind of workflow {p.name!r} is",
                        where=str(path),
                        hint="use a .cwl file, a Snakefile (or .smk), or a compiled plan .json")


def load_any(path: str | os.PathLike, inputs: dict[str, Any] | None = None, *,
             strict: bool = False) -> Workflow:
    """Load a CWL workflow or Snakefile into the IR."""
    if not Path(path).is_file():
        raise WorkflowError("no such workflow file", where=str(path),
                            hint="check the path; workflows are .cwl files or Snakefiles")
    kind = kind_of(path)
    target = dict(_FRONT_ENDS).get(kind)
    if target is None:
        raise WorkflowError(f"a {kind} file is not a workflow source", where=str(path),
                            hint="compile a .cwl file or a Snakefile")
    module_name, function = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UnsupportedFeature(f"the {kind} front end is not available in this version",
                                 where=str(path)) from None
    return getattr(module, function)(path, inputs, strict=strict)


def load_inputs_file(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read a CWL job/inputs file (YAML or JSON); File locations stay relative to it."""
    if path is None:
        return {}
    if not Path(path).is_file():
        raise ConfigError("no such inputs file", where=str(path),
                          hint="give a YAML or JSON file with the workflow's inputs")
    from swfflow.frontends.cwl import load_inputs
    return load_inputs(path)
