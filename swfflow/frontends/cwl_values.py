"""What a step input is worth at compile time (CWL v1.2 WorkflowStepInput semantics).

Order, as in the spec: gather the sources (linkMerge), pickValue, then ``default`` if the result
is null, then (per scatter element) ``valueFrom`` with ``self`` = that value and ``inputs`` = the
other inputs before their own valueFrom.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import WorkflowError
from ..ir import Binding, Condition
from .cwl_expr import UNKNOWN, evaluate_if_known, referenced_inputs


def merge_sources(values: list[Any], link_merge: str | None) -> Any:
    if link_merge == "merge_flattened":
        flat: list[Any] = []
        for value in values:
            flat.extend(value if isinstance(value, list) else [value])
        return flat
    return values  # merge_nested (the default for several sources)


def pick_value(value: Any, method: str | None, where: str, port: str) -> Any:
    if method is None:
        return value
    items = value if isinstance(value, list) else [value]
    present = [v for v in items if v is not None]
    if method == "first_non_null":
        if not present:
            raise WorkflowError(f"pickValue first_non_null on {port}: every source is null",
                                where=where, hint="give one of the sources a value")
        return present[0]
    if method == "the_only_non_null":
        if len(present) != 1:
            raise WorkflowError(f"pickValue the_only_non_null on {port}: {len(present)} "
                                "sources are non-null", where=where,
                                hint="exactly one source may have a value")
        return present[0]
    return present  # all_non_null


def gathered(binding: Binding, workflow_values: Mapping[str, Any], multiple: bool,
             where: str) -> Any:
    """Value of ``binding`` before valueFrom, or UNKNOWN if a source is a step output."""
    if any(src.step is not None for src in binding.sources):
        return UNKNOWN
    values = [workflow_values.get(src.port, None) for src in binding.sources]
    if any(v is UNKNOWN for v in values):
        return UNKNOWN
    if not binding.sources:
        value = None
    elif multiple or binding.link_merge:
        value = merge_sources(values, binding.link_merge)
    else:
        value = values[0]
    value = pick_value(value, binding.pick_value, where, binding.port)
    if value is None and binding.has_default:
        value = binding.default
    return value


def apply_value_from(bindings: Mapping[str, Binding], before: Mapping[str, Any],
                     requirements: list[dict], cwl_version: str,
                     where: str) -> dict[str, Any]:
    """Evaluate each valueFrom whose inputs are known; UNKNOWN for the others."""
    after = dict(before)
    for port, binding in bindings.items():
        expression = binding.value_from
        if expression is None:
            continue
        after[port] = evaluate_if_known(expression, before, bindings, self_port=port,
                                        requirements=requirements, cwl_version=cwl_version,
                                        where=where)
    return after


def condition(expression: str, values: Mapping[str, Any], ports: list[str],
              requirements: list[dict], cwl_version: str, where: str) -> Condition:
    """A ``when``: static True/False when every input it reads is known, else dynamic."""
    reads = referenced_inputs(expression, ports)
    result = evaluate_if_known(expression, values, ports, requirements=requirements,
                               cwl_version=cwl_version, where=where)
    if result is UNKNOWN:
        return Condition(expression, None, reads)
    if not isinstance(result, bool):
        raise WorkflowError(f"when: {expression!r} returned {result!r}, not a boolean",
                            where=where, hint="a CWL `when` must evaluate to true or false")
    return Condition(expression, result, reads)


def resolved_binding(binding: Binding, value: Any) -> Binding:
    """A binding whose value is known now becomes a constant (no source, no valueFrom)."""
    return Binding(binding.port, (), None, None, None, value, True, binding.load_contents)


Evaluator = Callable[[Any], Any]
