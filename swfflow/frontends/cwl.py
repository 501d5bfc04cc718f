"""The CWL front end: CWL v1.2 documents (and PanDA's pchain dialect) -> :mod:`swfflow.ir`.

Public API (the planner and the CLI call exactly this)::

    load_workflow(path, inputs=None, *, strict=False) -> ir.Workflow
    load_inputs(path) -> dict
    is_pchain(workflow_or_path) -> bool

Pure: reads files, evaluates expressions on known values (cwl-utils/node), no network.
The swfflow CWL extensions are described in docs/cwl-extensions.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import ir
from ..errors import ConfigError, WorkflowError
from .cwl_compile import Compiler, Scope, plain
from .cwl_loader import DocumentCache, Loaded, parse_yaml, absolute_locations, path_to_uri
from .cwl_pchain import is_pchain_run
from .cwl_types import type_str

__all__ = ["load_workflow", "load_inputs", "is_pchain", "DocumentCache"]

_PCHAIN_KINDS = {ir.StepKind.PRUN, ir.StepKind.PHPO, ir.StepKind.JUNCTION}


def load_workflow(path: str | os.PathLike, inputs: dict | None = None, *,
                  strict: bool = False, cache: DocumentCache | None = None) -> ir.Workflow:
    """Compile a CWL file (Workflow, or a single CommandLineTool/ExpressionTool) into the IR.

    ``inputs`` is the job object: workflow inputs whose values are given here (or have
    defaults) let ``when``/``valueFrom`` be decided now. ``strict`` also runs cwltool's
    validation (slower: types of every link, JavaScript syntax)."""
    text, _, fragment = str(path).partition("#")  # "packed.cwl#main" picks a $graph member
    path = Path(text)
    cache = cache or DocumentCache()
    uri = path_to_uri(path) + (f"#{fragment}" if fragment else "")
    loaded = cache.get(uri, referenced_from=str(path))
    name = path.stem
    if strict and not _is_pchain_document(loaded, cache):
        _cwltool_validate(path)
    values = dict(inputs or {})
    if loaded.process.class_ != "Workflow":
        loaded = _wrap_tool(loaded, name)
    return Compiler(cache).workflow(loaded, name, Scope(values, set(), job_given=inputs is not None))


def load_inputs(path: str | os.PathLike) -> dict[str, Any]:
    """Read a CWL job file (YAML or JSON). File/Directory ``location``/``path`` values are made
    absolute ``file://`` URIs relative to the job file, as cwltool resolves them."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such inputs file", where=str(path),
                          hint="give a YAML or JSON file with the workflow's inputs")
    try:
        data = parse_yaml(path)
    except WorkflowError as exc:
        raise ConfigError(exc.what, where=exc.where, hint=exc.hint) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError("an inputs file is a mapping of input name to value", where=f"{path}:1",
                          hint="write `name: value` lines")
    return absolute_locations(plain(data), path.resolve().parent)


def is_pchain(workflow_or_path: ir.Workflow | str | os.PathLike) -> bool:
    """True if the workflow uses PanDA's pchain dialect (steps run: prun/phpo/junction)."""
    if isinstance(workflow_or_path, ir.Workflow):
        return any(leaf.step.kind in _PCHAIN_KINDS for leaf in ir.iter_leaves(workflow_or_path))
    cache = DocumentCache()
    return _is_pchain_document(cache.get(path_to_uri(workflow_or_path)), cache)


def _is_pchain_document(loaded: Loaded, cache: DocumentCache, depth: int = 0) -> bool:
    for step in getattr(loaded.process, "steps", None) or ():
        if isinstance(step.run, str):
            if is_pchain_run(step.run):
                return True
            if depth < 20 and step.run.endswith(".cwl"):
                try:
                    if _is_pchain_document(cache.get(step.run), cache, depth + 1):
                        return True
                except WorkflowError:
                    continue
    return False


def _wrap_tool(tool: Loaded, name: str) -> Loaded:
    """A bare CommandLineTool/ExpressionTool becomes a one-step workflow named after the file."""
    from cwl_utils.parser import load_document_by_yaml

    from .cwl_compile import local_name

    def simple(t: Any) -> Any:
        text = type_str(t)
        return text if all(c.isalnum() or c in "[]?" for c in text) else ["null", "Any"]

    # the step name is an id: a colon would read as a namespace prefix (`colon:test.cwl`)
    name = re.sub(r"[^\w.-]", "_", name)
    proc = tool.process
    inputs = {local_name(i.id): {"type": simple(i.type_)} for i in proc.inputs}
    outputs = {local_name(o.id): {"type": simple(o.type_), "outputSource": f"{name}/{local_name(o.id)}"}
               for o in proc.outputs}
    wrapper = {
        "cwlVersion": proc.cwlVersion or "v1.2", "class": "Workflow",
        "inputs": inputs, "outputs": outputs,
        "steps": {name: {"run": tool.uri, "in": {k: k for k in inputs}, "out": list(outputs)}},
    }
    uri = f"{tool.uri.split('#')[0]}#swfflow-wrapper"
    return Loaded(load_document_by_yaml(wrapper, uri), wrapper, tool.uri, tool.root)


def _cwltool_validate(path: Path) -> None:
    """cwltool's own load + validation (what `cwltool --validate` does), as a library call."""
    import logging

    from cwl_utils.errors import WorkflowException
    from cwltool.context import LoadingContext
    from cwltool.load_tool import load_tool
    from cwltool.workflow import default_make_tool
    from schema_salad.exceptions import ValidationException

    from .cwl_loader import salad_where

    # cwltool logs warnings about our swf: hints ("unknown hint"): expected, not news
    loggers = [logging.getLogger(n) for n in ("cwltool", "salad")]
    previous = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    context = LoadingContext({"do_validate": True})
    context.construct_tool_object = default_make_tool
    try:
        load_tool(str(path.resolve()), context)
    except (ValidationException, WorkflowException) as exc:
        text = str(exc)
        raise WorkflowError(f"cwltool validation failed:\n{text}",
                            where=salad_where(text) or f"{path}:1",
                            hint="fix the problems cwltool lists (`cwltool --validate` shows the same)") from None
    finally:
        for lg, was in zip(loggers, previous, strict=True):
            lg.disabled = was
