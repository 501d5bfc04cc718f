"""CWL types -> the IR's short type strings and port kinds."""

from __future__ import annotations

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
