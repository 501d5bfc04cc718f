"""PanDA's pchain CWL dialect: steps whose ``run:`` is ``prun``/``phpo``/``junction``.

Read from PanDA's own parser (pandaserver/workflow/pcwl_utils.py, workflow_utils.Node): such a
step is not a CWL process but a PanDA task described by ``opt_*`` inputs; its ``when`` is a
small grammar over *parent success* (``self.X`` = the step feeding X succeeded), not JavaScript.
The opt_* values are kept verbatim in ``Step.native`` for swfflow.plan.pchain.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from .. import ir
from ..errors import UnsupportedFeature, WorkflowError
from .cwl_expr import UNKNOWN

_KINDS = {"prun": ir.StepKind.PRUN, "phpo": ir.StepKind.PHPO, "junction": ir.StepKind.JUNCTION}
_NOT_SUPPORTED = {"reana", "gitlab"}
# accepted inputs per step type, as pchain's Node.verify checks them
ALLOWED_INPUTS = {
    ir.StepKind.PRUN: {"opt_inDS", "opt_inDsType", "opt_secondaryDSs", "opt_secondaryDsTypes",
                       "opt_args", "opt_exec", "opt_useAthenaPackages", "opt_containerImage"},
    ir.StepKind.JUNCTION: {"opt_inDS", "opt_inDsType", "opt_args", "opt_exec", "opt_containerImage"},
    ir.StepKind.PHPO: {"opt_trainingDS", "opt_trainingDsType", "opt_args"},
}
DATASET_INPUTS = {"opt_inDS", "opt_secondaryDSs", "opt_trainingDS"}


def pchain_name(run: str) -> str:
    """``file:///dir/prun.cwl`` -> ``prun``."""
    base = urlparse(run).path.rsplit("/", 1)[-1] if "://" in run else run.rsplit("/", 1)[-1]
    return base.removesuffix(".cwl")


def is_pchain_run(run: str) -> bool:
    return pchain_name(run) in _KINDS or pchain_name(run) in _NOT_SUPPORTED


def pchain_step(name: str, step_def: Any, bindings: dict[str, ir.Binding],
                workflow_values: Mapping[str, Any], where: str) -> ir.Step:
    run_name = pchain_name(step_def.run)
    if run_name in _NOT_SUPPORTED:
        raise UnsupportedFeature(f"pchain step type {run_name!r} (step {name!r}) is not supported",
                                 where=where, hint="swfflow compiles prun, phpo and junction steps")
    kind = _KINDS[run_name]
    unknown = sorted(set(bindings) - ALLOWED_INPUTS[kind])
    if unknown:
        raise WorkflowError(f"unknown input parameter(s) {', '.join(unknown)} for {run_name} "
                            f"step {name!r}", where=where,
                            hint=f"{run_name} takes {', '.join(sorted(ALLOWED_INPUTS[kind]))}")
    native: dict[str, Any] = {"type": run_name}
    sources: dict[str, list[str]] = {}
    for port, binding in sorted(bindings.items()):
        upstream = [str(s) for s in binding.sources if s.step is not None]
        if upstream:
            sources[port] = upstream
            continue
        values = [workflow_values.get(s.port) for s in binding.sources]
        value = binding.default if not values else values[0] if len(values) == 1 else values
        if value is None and binding.has_default:
            value = binding.default
        if value is UNKNOWN:
            value = None
        native[port] = value
    if sources:
        native["sources"] = sources
    inputs = {p: ir.Port(p, ir.PortKind.DATASET if p in DATASET_INPUTS else ir.PortKind.PARAM)
              for p in sorted(bindings)}
    out_names = [str(o if isinstance(o, str) else o.id).rsplit("/", 1)[-1] for o in step_def.out]
    outputs = {o: ir.Port(o, ir.PortKind.DATASET, "string") for o in out_names or ["outDS"]}
    when = None
    if getattr(step_def, "when", None):
        tree = parse_when(step_def.when, where)
        reads = tuple(sorted(_refs(tree)))
        missing = [r for r in reads if r not in bindings]
        if missing:
            raise WorkflowError(f"when of step {name!r} reads self.{missing[0]}, not an input of "
                                "the step", where=where, hint="self.X names one of the step's inputs")
        native["when"] = tree
        when = ir.Condition(step_def.when, None, reads)
    scatter = None
    if step_def.scatter:
        ports = tuple(str(s).rsplit("/", 1)[-1] for s in
                      (step_def.scatter if isinstance(step_def.scatter, list) else [step_def.scatter]))
        scatter = ir.Scatter(ports, ir.ScatterMethod.DOTPRODUCT)  # pchain zips, whatever is said
    return ir.Step(name=name, kind=kind, inputs=inputs, outputs=outputs, bindings=bindings,
                   scatter=scatter, when=when, native=native, tool_uri=str(step_def.run),
                   where=where)


_TOKEN = re.compile(r"\s*(?:(?P<ref>self\.\w+)|(?P<op>&&|\|\||!|\(|\)))")


def parse_when(expression: str, where: str) -> dict[str, Any]:
    """pchain's condition grammar -> a tree of {"ref"}, {"not"}, {"and"/"or": [l, r]}.

    As in pchain, ``&&`` and ``||`` have equal precedence and associate to the left; use
    parentheses to group."""
    text = expression.strip()
    match = re.fullmatch(r"\$\((.*)\)", text, re.S)
    body = match.group(1) if match else text
    tokens, position = [], 0
    while position < len(body.rstrip()):
        found = _TOKEN.match(body, position)
        if not found:
            raise WorkflowError(f"pchain condition {expression!r}: cannot read "
                                f"{body[position:].strip()!r}", where=where,
                                hint="pchain `when` allows self.X, !self.X, &&, || and parentheses")
        tokens.append(found.group("ref") or found.group("op"))
        position = found.end()
    tree, rest = _expression(tokens, expression, where)
    if rest:
        raise WorkflowError(f"pchain condition {expression!r}: unexpected {rest[0]!r}", where=where,
                            hint="check the parentheses")
    return tree


def _expression(tokens: list[str], text: str, where: str) -> tuple[dict, list[str]]:
    left, tokens = _operand(tokens, text, where)
    while tokens and tokens[0] in ("&&", "||"):
        op = "and" if tokens[0] == "&&" else "or"
        right, tokens = _operand(tokens[1:], text, where)
        left = {op: [left, right]}
    return left, tokens


def _operand(tokens: list[str], text: str, where: str) -> tuple[dict, list[str]]:
    if not tokens:
        raise WorkflowError(f"pchain condition {text!r} ends too early", where=where,
                            hint="every && / || / ! needs an operand")
    head, rest = tokens[0], tokens[1:]
    if head == "!":
        inner, rest = _operand(rest, text, where)
        return {"not": inner}, rest
    if head == "(":
        inner, rest = _expression(rest, text, where)
        if not rest or rest[0] != ")":
            raise WorkflowError(f"pchain condition {text!r}: missing ')'", where=where,
                                hint="balance the parentheses")
        return inner, rest[1:]
    if head.startswith("self."):
        return {"ref": head[5:]}, rest
    raise WorkflowError(f"pchain condition {text!r}: unexpected {head!r}", where=where,
                        hint="pchain `when` allows self.X, !self.X, &&, || and parentheses")


def _refs(tree: Mapping[str, Any]) -> set[str]:
    if "ref" in tree:
        return {tree["ref"]}
    found: set[str] = set()
    for value in tree.values():
        for child in value if isinstance(value, list) else [value]:
            found |= _refs(child)
    return found
