"""Leaf steps of the IR as standalone cwltool processes (what a job runs).

A leaf's process dict is run standalone, so the requirements it inherits from its enclosing
workflows (InlineJavascriptRequirement, SchemaDefRequirement, …) are written into it, and it gets
an id under its source file so relative references (``$include``, default file locations)
resolve as they do in the workflow.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any
from urllib.parse import urldefrag

from swfflow import ir
from swfflow.errors import RunFailed
from swfflow.plan.floats import spelled



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
