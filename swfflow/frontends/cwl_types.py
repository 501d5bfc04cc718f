"""CWL types -> the IR's short type strings and port kinds."""

from __future__ import annotations

import difflib
from typing import Any

from ..ir import PortKind

_FILE_LIKE = {"File", "Directory", "stdout", "stderr"}


def type_str(cwl_type: Any) -> str:
    """``File``, ``File[]``, ``int?``, ``record``, ``enum``, ``File|string`` ... from a cwl-utils type."""
    if cwl_type is None:
        return "Any"
    if isinstance(cwl_type, str):
        name = cwl_type.rsplit("#", 1)[-1]
        return "File" if name in ("stdout", "stderr") else name
    if isinstance(cwl_type, list):
        members = [type_str(t) for t in cwl_type]
        optional = "null" in members
        members = [m for m in members if m != "null"]
        text = members[0] if len(members) == 1 else "|".join(members) if members else "null"
        return f"{text}?" if optional and members else text
    kind = getattr(cwl_type, "type_", None)
    if kind == "array":
        inner = type_str(cwl_type.items)
        return f"({inner})[]" if ("|" in inner or inner.endswith("?")) else f"{inner}[]"
    if kind in ("record", "enum"):
        return kind
    if isinstance(cwl_type, dict):  # raw maps (pchain dialect, job files)
        if cwl_type.get("type") == "array":
            return f"{type_str(cwl_type.get('items'))}[]"
        return str(cwl_type.get("type", "Any"))
    return "Any"


# the names CWL defines; anything else must be a SchemaDefRequirement type
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "File",
                        "Directory", "Any", "stdout", "stderr", "stdin", "record", "enum",
                        "array"})


def unknown_type_names(cwl_type: Any, defined: set[str]) -> list[str]:
    """Type names in ``cwl_type`` that are neither CWL's nor in ``defined`` (the fragments of
    the SchemaDefRequirement types in scope) and close to one of CWL's: a typo such as
    ``bolean``."""
    if isinstance(cwl_type, str):
        name = cwl_type.rsplit("#", 1)[-1].rsplit("/", 1)[-1].rstrip("?")
        while name.endswith("[]"):
            name = name[:-2]
        # only a near miss of CWL's own names is certainly a typo: other names may come from
        # schemas this front end does not resolve (cwltool checks those when the job runs)
        typo = name not in PRIMITIVES and name not in defined and \
            difflib.get_close_matches(name, PRIMITIVES, n=1, cutoff=0.8)
        return [name] if typo else []
    if isinstance(cwl_type, list):
        return [n for t in cwl_type for n in unknown_type_names(t, defined)]
    items = getattr(cwl_type, "items", None)
    fields = getattr(cwl_type, "fields", None) or []
    found = unknown_type_names(items, defined) if items is not None else []
    return found + [n for f in fields for n in unknown_type_names(getattr(f, "type_", None),
                                                                 defined)]


def defined_type_names(requirement_levels: list[list[dict]]) -> set[str]:
    """The fragments of every SchemaDefRequirement type name in scope."""
    names: set[str] = set()
    for level in requirement_levels:
        for req in level:
            if str(req.get("class", "")).endswith("SchemaDefRequirement"):
                for item in req.get("types") or []:
                    name = str(item.get("name", "")) if isinstance(item, dict) else ""
                    names.add(name.rsplit("#", 1)[-1].rsplit("/", 1)[-1])
    return names


def port_kind(type_text: str) -> PortKind:
    """File/Directory -> FILE, arrays of them -> FILES, anything else -> PARAM."""
    base = type_text.rstrip("?")
    members = [m.strip("()") for m in base.split("|")]
    if all(m in _FILE_LIKE for m in members):
        return PortKind.FILE
    if base.endswith("[]") and all(m.strip("()").removesuffix("[]").strip("()") in _FILE_LIKE
                                   for m in base.removesuffix("[]").split("|")):
        return PortKind.FILES
    return PortKind.PARAM
