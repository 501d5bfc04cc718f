"""Leaf steps of the IR, run through cwltool, with provenance.

A leaf's process dict is run standalone, so the requirements it inherits from its enclosing
workflows (InlineJavascriptRequirement, SchemaDefRequirement, …) are written into it, and it gets
an id under its source file so relative references (``$include``, default file locations)
resolve as they do in the workflow.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag

from swfflow import ir
from swfflow.errors import RunFailed
from swfflow.plan.floats import spelled
from swfflow.runtime.containers import ContainerPolicy
from swfflow.runtime.jobrun import clean_outputs
from swfflow.runtime.tool import ToolResult, run_tool

ProvenanceSink = Callable[[str, dict[str, Any], ToolResult], None]


def standalone_tool(step: ir.Step) -> dict[str, Any]:
    """The step's process dict, self-contained for cwltool."""
    if step.tool is None:
        raise RunFailed(f"step {step.name!r} has no CWL process to run", where=step.where)
    # a deep copy, not a JSON round trip: cwltool writes a float on the command line as the
    # document spelled it (1.23e5 -> 123000), which ruamel's ScalarFloat remembers
    tool = copy.deepcopy(step.tool)
    base = urldefrag(step.tool_uri or "")[0]
    digest = hashlib.sha1(json.dumps(tool, sort_keys=True).encode()).hexdigest()[:12]
    tool["id"] = f"{base}#swfflow-{step.name}-{digest}" if base else f"_:swfflow-{digest}"
    tool["requirements"] = _merged(tool.get("requirements"), step.requirements,
                                   resolved=_RESOLVED_BY_FRONT_END)
    # extension hints (swf:Sizing, …) were for the planner; cwltool would only warn about them
    tool["hints"] = [h for h in _merged(tool.get("hints"), step.hints)
                     if ":" not in str(h.get("class")) or "$namespaces" in tool]
    return spelled(tool)  # it travels as JSON (executor state, PanDA sandbox)


# Requirements whose names the front end resolved against the original document: the tool's
# raw copy says `person` where its new id would make cwltool look for `…#swfflow-…/person`.
_RESOLVED_BY_FRONT_END = frozenset({"SchemaDefRequirement"})


def _merged(own: Any, inherited: tuple[dict[str, Any], ...],
            resolved: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The tool's own items (or the front end's resolved copy for the ``resolved`` classes),
    then the inherited classes the tool does not set itself."""
    items = list(own.values()) if isinstance(own, dict) and "class" not in own else list(own or [])
    if isinstance(own, dict) and "class" not in own:  # map form {Class: {...}}
        items = [{"class": k, **(v or {})} for k, v in own.items()]
    by_class = {str(r.get("class")): r for r in inherited}
    items = [dict(by_class[str(i.get("class"))]) if str(i.get("class")) in resolved
             and str(i.get("class")) in by_class else i for i in items]
    present = {str(i.get("class")) for i in items}
    return items + [dict(r) for r in inherited if str(r.get("class")) not in present]


@dataclass
class LeafRunner:
    """Runs leaves of an IR workflow in job directories under ``workdir``."""

    workdir: Path
    policy: ContainerPolicy = ContainerPolicy()
    provenance: ProvenanceSink | None = None
    cache_dir: Path | None = None  # cwltool's job cache: a re-run reuses finished jobs
    counter: int = 0
    _tools: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __call__(self, step: ir.Step, job: dict[str, Any], label: str) -> dict[str, Any]:
        tool = self._tools.get(id(step))
        if tool is None:
            tool = self._tools[id(step)] = standalone_tool(step)
        self.counter += 1
        outdir = self.workdir / "steps" / f"{self.counter:05d}-{_safe(label)}"
        result = run_tool(tool, job, outdir, policy=self.policy, workdir=self.workdir,
                          where=step.where or label, cache_dir=self.cache_dir)
        if self.provenance is not None:
            self.provenance(label, job, result)
        if not result.ok:
            code = "" if result.exit_code is None else f" (exit code {result.exit_code})"
            raise RunFailed(f"step {label} failed{code}", where=step.where or None,
                            hint="last lines of its log:\n" + result.log_tail(15))
        return clean_outputs(result.outputs or {})


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[:80]
