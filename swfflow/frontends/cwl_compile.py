"""Walk loaded CWL processes into the IR, one workflow level at a time."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urldefrag

import networkx as nx

from .. import ir
from ..errors import UnsupportedFeature, WorkflowError
from . import cwl_reqs as reqs
from .cwl_expr import UNKNOWN, evaluate_if_known
from .cwl_loader import DocumentCache, Loaded, line_of
from .cwl_pchain import is_pchain_run, pchain_step
from .cwl_types import (PRIMITIVES, defined_type_names, port_kind, type_str,
                         unknown_type_names)
from .cwl_values import apply_value_from, condition, gathered, resolved_binding

SWF = reqs.SWF_NAMESPACE
_KINDS = {"CommandLineTool": ir.StepKind.COMMAND, "ExpressionTool": ir.StepKind.EXPRESSION,
          "Workflow": ir.StepKind.WORKFLOW}
_MODES = {"stream": ir.EdgeMode.STREAM, "complete": ir.EdgeMode.COMPLETE}


def local_name(uri: str) -> str:
    """Last path segment of a cwl-utils id: ``file:///w.cwl#main/step1/in`` -> ``in``."""
    return urldefrag(uri)[1].rsplit("/", 1)[-1] or uri


def plain(value: Any) -> Any:
    """ruamel/cwl-utils containers -> dict/list (deterministic, JSON-able)."""
    if hasattr(value, "save"):  # a cwl-utils object (File default, SecondaryFileSchema, ...)
        return plain(value.save(top=False))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def raw_member(raw: Any, key: str, name: str) -> Any:
    """The raw map of ``name`` under ``raw[key]``, in map form or list-of-maps-with-id form."""
    members = raw.get(key) if isinstance(raw, Mapping) else None
    if isinstance(members, Mapping):
        return members.get(name)
    for item in members or ():
        if isinstance(item, Mapping) and str(item.get("id", "")).lstrip("#").rsplit("/", 1)[-1] == name:
            return item
    return None


@dataclass
class Scope:
    """What a workflow level inherits from its parents."""

    values: dict[str, Any]  # workflow input -> value known now, or UNKNOWN
    stream_inputs: set[str]
    requirement_levels: list[list[dict]] = field(default_factory=list)
    hint_levels: list[list[dict]] = field(default_factory=list)
    cwl_version: str = "v1.2"
    job_given: bool = False  # a job object was given: absent optional inputs are null


def _initial_value(port: ir.Port, job_given: bool) -> Any:
    """A workflow input absent from the job. Without a job object nothing is known (a job may
    still override a default); with one, the default, or null if the input is optional."""
    if not job_given:
        return UNKNOWN
    if port.has_default:
        return port.default
    return None if port.type.endswith("?") else UNKNOWN


class Compiler:
    def __init__(self, cache: DocumentCache):
        self.cache = cache

    # --- one workflow level -------------------------------------------------------------
    def workflow(self, loaded: Loaded, name: str, scope: Scope) -> ir.Workflow:
        proc, raw = loaded.process, loaded.raw
        path = loaded.path
        own_reqs, own_hints = reqs.as_dicts(proc.requirements), reqs.as_dicts(proc.hints)
        reqs.check_supported(own_reqs, f"{path}:{line_of(raw, 'requirements') or 1}")
        scope = replace(scope, requirement_levels=scope.requirement_levels + [own_reqs],
                        hint_levels=scope.hint_levels + [own_hints],
                        cwl_version=getattr(proc, "cwlVersion", None) or scope.cwl_version)
        workflow = ir.Workflow(name=name, requirements=tuple(own_reqs), hints=tuple(own_hints),
                               source_path=path, doc=_doc(proc))
        input_ids: dict[str, str] = {}
        defined = defined_type_names(scope.requirement_levels)
        for inp in proc.inputs:
            port = _port(inp)
            unknown = unknown_type_names(inp.type_, defined)
            if unknown:
                raise WorkflowError(
                    f"input {port.name!r} has unknown type {unknown[0]!r} (a typo of "
                    f"{difflib.get_close_matches(unknown[0], PRIMITIVES, n=1)[0]!r}?)",
                    where=f"{path}:{line_of(raw_member(raw, 'inputs', port.name)) or 1}",
                    hint="CWL types: boolean, int, long, float, double, string, File, "
                         "Directory, Any (with [] for arrays, ? for optional), or a "
                         "SchemaDefRequirement type")
            input_ids[inp.id] = port.name
            stream = bool((inp.extension_fields or {}).get(SWF + "stream")) \
                or port.name in scope.stream_inputs
            if stream and port.kind is not ir.PortKind.FILES:
                raise WorkflowError(f"input {port.name!r} is marked swf:stream but has type "
                                    f"{port.type}", where=f"{path}:{line_of(raw_member(raw, 'inputs', port.name)) or 1}",
                                    hint="a stream is the run's STF files: use type File[]")
            workflow.inputs[port.name] = ir.WorkflowInput(port, stream)
            if port.name not in scope.values:
                scope.values[port.name] = _initial_value(port, scope.job_given)
            elif scope.values[port.name] is None and port.has_default:
                scope.values[port.name] = port.default  # CWL: a null input takes the default
        stream_names = {n for n, wi in workflow.inputs.items() if wi.stream}
        outputs_of = self._step_outputs(proc)
        pending: list[tuple[ir.Step, ir.Binding, ir.Source, Any]] = []
        for step_def in proc.steps:
            step, modes = self._step(step_def, loaded, raw, input_ids, outputs_of, stream_names, scope)
            workflow.add_step(step)
            for binding in step.bindings.values():
                for source in binding.sources:
                    if source.step is not None:
                        pending.append((step, binding, source, modes.get(binding.port)))
        for step, binding, source, mode in pending:
            producer = workflow.step(source.step)
            if mode is None:
                per_file = (step.scatter and binding.port in step.scatter.ports
                            and producer.scatter is not None)
                mode = ir.EdgeMode.STREAM if per_file else ir.EdgeMode.COMPLETE
            workflow.add_link(ir.Link(source.step, source.port, step.name, binding.port, mode))
        _check_acyclic(workflow)
        for out in proc.outputs:
            sources = _as_list(out.outputSource)
            workflow.outputs[local_name(out.id)] = ir.WorkflowOutput(
                local_name(out.id), type_str(out.type_),
                tuple(self._source(s, input_ids, outputs_of, path, f"output {local_name(out.id)}")
                      for s in sources),
                getattr(out, "linkMerge", None), getattr(out, "pickValue", None))
        return workflow

    @staticmethod
    def _step_outputs(proc: Any) -> dict[str, tuple[str, str]]:
        found = {}
        for step_def in proc.steps:
            for out in step_def.out:
                out_id = out if isinstance(out, str) else out.id
                found[out_id] = (local_name(step_def.id), local_name(out_id))
        return found

    @staticmethod
    def _source(uri: str, input_ids: dict[str, str], outputs_of: dict[str, tuple[str, str]],
                where: str, what: str) -> ir.Source:
        if uri in input_ids:
            return ir.Source(None, input_ids[uri])
        if uri in outputs_of:
            return ir.Source(*outputs_of[uri])
        shown = "/".join(urldefrag(uri)[1].split("/")[-2:])
        raise WorkflowError(f"{what} reads {shown!r}, "
                            "which is neither a workflow input nor a step output listed in `out`",
                            where=where,
                            hint="check the spelling; a step output must also be listed in that step's `out:`")

    # --- one step -------------------------------------------------------------------------
    def _step(self, step_def: Any, loaded: Loaded, raw: Any, input_ids: dict[str, str],
              outputs_of: dict[str, tuple[str, str]], stream_names: set[str],
              scope: Scope) -> tuple[ir.Step, dict[str, ir.EdgeMode]]:
        name = local_name(step_def.id)
        raw_step = raw_member(raw, "steps", name)
        steps_map = raw.get("steps") if isinstance(raw, Mapping) else None
        line = line_of(steps_map, name) if isinstance(steps_map, Mapping) and name in steps_map \
            else line_of(raw_step)
        where = f"{loaded.path}:{line or 1}"
        step_reqs, step_hints = reqs.as_dicts(step_def.requirements), reqs.as_dicts(step_def.hints)
        reqs.check_supported(step_reqs, where)

        bindings: dict[str, ir.Binding] = {}
        modes: dict[str, ir.EdgeMode] = {}
        for inp in step_def.in_:
            port = local_name(inp.id)
            sources = tuple(self._source(s, input_ids, outputs_of, where, f"step {name!r} input {port!r}")
                            for s in _as_list(inp.source))
            bindings[port] = ir.Binding(
                port, sources, inp.linkMerge, getattr(inp, "pickValue", None), inp.valueFrom,
                plain(inp.default), inp.default is not None, bool(getattr(inp, "loadContents", False)))
            mode = (inp.extension_fields or {}).get(SWF + "mode")
            if mode is not None:
                if mode not in _MODES:
                    raise WorkflowError(f"step {name!r} input {port!r}: swf:mode {mode!r}", where=where,
                                        hint="swf:mode is `stream` or `complete`")
                modes[port] = _MODES[mode]

        if isinstance(step_def.run, str) and is_pchain_run(step_def.run):
            step = pchain_step(name, step_def, bindings, scope.values, where)
            return step, modes

        target = self._run_target(step_def, loaded, raw_step, where)
        proc = target.process
        kind = _KINDS.get(proc.class_)
        if kind is None:
            raise UnsupportedFeature(f"step {name!r} runs an abstract {proc.class_}, which swfflow "
                                     "cannot execute",
                                     where=where, hint="replace the abstract Operation by a "
                                     "CommandLineTool that implements it")
        tool_reqs, tool_hints = reqs.as_dicts(proc.requirements), reqs.as_dicts(proc.hints)
        if kind is not ir.StepKind.WORKFLOW:
            reqs.check_supported(tool_reqs, f"{target.path}:{line_of(target.raw, 'requirements') or 1}")
        requirements, hints = reqs.effective(scope.requirement_levels + [step_reqs, tool_reqs],
                                             scope.hint_levels + [step_hints, tool_hints])
        inputs = {p.name: p for p in map(_port, proc.inputs)}
        tool_outputs = {local_name(o.id): o for o in proc.outputs}
        outputs = {}
        for out in step_def.out:
            out_name = local_name(out if isinstance(out, str) else out.id)
            if out_name not in tool_outputs:
                raise WorkflowError(f"step {name!r} lists output {out_name!r}, but {target.path} has "
                                    f"no such output", where=where,
                                    hint=f"outputs are: {', '.join(sorted(tool_outputs)) or 'none'}")
            outputs[out_name] = _port(tool_outputs[out_name])

        scatter = self._scatter(step_def, bindings, where)
        scattered = set(scatter.ports) if scatter else set()
        wf_reqs, _ = reqs.effective(scope.requirement_levels + [step_reqs], scope.hint_levels)
        before = {p: UNKNOWN if p in scattered or b.load_contents else
                  gathered(b, scope.values, len(b.sources) > 1, where) for p, b in bindings.items()}
        for port_name, port in inputs.items():  # tool defaults for unbound inputs
            before.setdefault(port_name, port.default)
        values = apply_value_from(bindings, before, wf_reqs, scope.cwl_version, where)
        when = None
        if getattr(step_def, "when", None):
            when = condition(step_def.when, values, list(bindings), wf_reqs, scope.cwl_version, where)
        for port, binding in bindings.items():
            if binding.value_from is not None and values[port] is not UNKNOWN:
                bindings[port] = resolved_binding(binding, plain(values[port]))

        streaming = tuple(sorted(
            p for p, b in bindings.items()
            if any(s.step is None and s.port in stream_names for s in b.sources)
            and modes.get(p) is not ir.EdgeMode.COMPLETE))

        # the tool sees its own default where the step passes null (CWL input `default`)
        tool_values = {p: inputs[p].default if v is None and p in inputs and inputs[p].has_default
                       else v for p, v in values.items()}

        def evaluate_now(expression: Any) -> Any:
            return evaluate_if_known(expression, tool_values, inputs, requirements=requirements,
                                     cwl_version=scope.cwl_version, where=where)

        step = ir.Step(
            name=name, kind=kind, inputs=inputs, outputs=outputs, bindings=bindings,
            scatter=scatter, when=when,
            resources=reqs.resources(requirements, hints, evaluate_now, where),
            sizing=reqs.sizing(hints, requirements, where), container=reqs.container(requirements, hints),
            retries=reqs.retries(hints, requirements, where), command=_command(proc),
            tool=_tool_dict(target), tool_uri=target.uri, streaming_inputs=streaming,
            requirements=tuple(requirements), hints=tuple(hints), where=where, doc=_doc(step_def) or _doc(proc))
        if kind is ir.StepKind.WORKFLOW:
            inner_values = {p: values.get(p, UNKNOWN) for p in inputs}
            inner_streams = set(streaming) | {lk for lk, m in modes.items() if m is ir.EdgeMode.STREAM}
            step.subworkflow = self.workflow(target, name, Scope(
                inner_values, inner_streams, scope.requirement_levels + [step_reqs],
                scope.hint_levels + [step_hints], scope.cwl_version, True))
        return step, modes

    def _run_target(self, step_def: Any, loaded: Loaded, raw_step: Any, where: str) -> Loaded:
        if isinstance(step_def.run, str):
            run_line = line_of(raw_step, "run") if isinstance(raw_step, Mapping) else None
            run_where = f"{where.rsplit(':', 1)[0]}:{run_line}" if run_line else where
            return self.cache.get(step_def.run, referenced_from=run_where)
        raw_run = raw_step.get("run") if isinstance(raw_step, Mapping) else None
        # inline process: keep the enclosing file as the base URI for its relative references
        return Loaded(step_def.run, raw_run if isinstance(raw_run, Mapping) else {},
                      urldefrag(loaded.uri)[0], loaded.root)

    @staticmethod
    def _scatter(step_def: Any, bindings: dict[str, ir.Binding], where: str) -> ir.Scatter | None:
        ports = tuple(local_name(s) for s in _as_list(step_def.scatter))
        if not ports:
            return None
        missing = [p for p in ports if p not in bindings]
        if missing:
            raise WorkflowError(f"scatter over {', '.join(missing)}, which is not a step input",
                                where=where, hint="scatter names inputs listed under `in:`")
        method = step_def.scatterMethod
        if len(ports) > 1 and not method:
            raise WorkflowError("scatter over several inputs needs a scatterMethod", where=where,
                                hint="add scatterMethod: dotproduct | flat_crossproduct | nested_crossproduct")
        return ir.Scatter(ports, ir.ScatterMethod(method or "dotproduct"))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _doc(obj: Any) -> str:
    doc = getattr(obj, "doc", None) or getattr(obj, "label", None) or ""
    return "\n".join(doc) if isinstance(doc, list) else str(doc)


def _port(param: Any) -> ir.Port:
    text = type_str(param.type_)
    default = getattr(param, "default", None)
    secondary = getattr(param, "secondaryFiles", None) or ()
    patterns = tuple(str(getattr(s, "pattern", s)) for s in _as_list(secondary))
    binding = getattr(param, "inputBinding", None)
    load_contents = bool(getattr(param, "loadContents", None)
                         or getattr(binding, "loadContents", None))
    return ir.Port(local_name(param.id), port_kind(text), text, plain(default),
                   default is not None, _doc(param), patterns, load_contents)


def _tool_dict(target: Loaded) -> dict[str, Any]:
    tool = plain(target.raw)
    tool.setdefault("cwlVersion", target.root.get("cwlVersion", "v1.2"))
    if "$namespaces" in target.root:
        tool.setdefault("$namespaces", plain(target.root["$namespaces"]))
    return tool


def _command(proc: Any) -> tuple[str, ...]:
    """Display argv: baseCommand, literal arguments, then bound inputs by position."""
    if proc.class_ != "CommandLineTool":
        return ()
    argv = [str(t) for t in _as_list(proc.baseCommand)]
    bound = []
    for order, arg in enumerate(proc.arguments or ()):
        text = arg if isinstance(arg, str) else (getattr(arg, "valueFrom", "") or "")
        position = 0 if isinstance(arg, str) else (getattr(arg, "position", 0) or 0)
        bound.append((position, 0, order, [str(text)]))
    for order, inp in enumerate(proc.inputs):
        binding = getattr(inp, "inputBinding", None)
        if binding is None:
            continue
        name = local_name(inp.id)
        token = f"{{{'in' if port_kind(type_str(inp.type_)) is not ir.PortKind.PARAM else 'param'}:{name}}}"
        prefix = [binding.prefix] if binding.prefix else []
        bound.append((binding.position or 0, 1, order, prefix + [token]))
    for *_, tokens in sorted(bound, key=lambda b: b[:3]):
        argv += tokens
    for stream in ("stdout", "stderr"):
        target = getattr(proc, stream, None)
        if target:
            argv += [">" if stream == "stdout" else "2>", str(target)]
    return tuple(argv)


def _check_acyclic(workflow: ir.Workflow) -> None:
    try:
        cycle = nx.find_cycle(workflow.graph)
    except nx.NetworkXNoCycle:
        return
    names = [edge[0] for edge in cycle] + [cycle[0][0]]
    first = workflow.step(cycle[0][0])
    raise WorkflowError(f"steps form a cycle: {' -> '.join(names)}", where=first.where,
                        hint="a CWL workflow is acyclic; break the loop or unroll it")
