"""swfflow's CWL workflow engine over the IR: the workflow semantics, evaluated at run time.

For each step, in topological order: gather its sources (``linkMerge``), ``pickValue``,
``default``, then scatter (dotproduct / flat / nested crossproduct, empty arrays included), then
per job ``valueFrom`` (``self`` = the element), ``when`` (false → null outputs), and finally the
process itself: a leaf goes to the ``run_leaf`` callback (cwltool, see :mod:`.tool`), a
sub-workflow recurses. Workflow outputs are gathered the same way as step inputs.

Scatter widths and conditions are decided here, on real values — what the planner could not
know at compile time (reference/snakemake-cwl.md §10: "scatter width and when are resolved
lazily").

With ``jobs`` > 1 the elements of a scatter, and steps that do not depend on each other, run
at the same time, at most ``jobs`` leaf jobs at once (:mod:`.parallel`); results keep their
scatter order, so outputs are the same as with ``jobs`` = 1.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from swfflow import ir
from swfflow.errors import RunFailed, SwfflowError
from swfflow.frontends.cwl_expr import evaluate
from swfflow.drive import scatter as scatter_rt
from swfflow.frontends.cwl_values import merge_sources, pick_value
from swfflow.runtime.files import absolute_locations, describe_files
from swfflow.drive.parallel import JobSlots

# (step, job) → the leaf's CWL output object; raises RunFailed when the job fails
LeafRunner = Callable[[ir.Step, dict[str, Any], str], dict[str, Any]]
_CONTENTS_LIMIT = 64 * 1024


def _same(value: Any) -> Any:
    return value


def _never(step: ir.Step, inputs: dict[str, Any]) -> bool:
    return False


@dataclass
class Engine:
    """``materialize`` turns lazy values (a dataset still being written) into real ones where
    the engine needs to look at them (scatter, valueFrom, when, pickValue, loadContents);
    ``splits(step, inputs)`` says the backend itself splits the step's scatter over a dataset
    (JEDI), so the step runs as one leaf job."""

    run_leaf: LeafRunner
    cwl_version: str = "v1.2"
    jobs: int = 1  # leaf jobs at once
    materialize: Callable[[Any], Any] = _same
    splits: Callable[[ir.Step, dict[str, Any]], bool] = _never
    _slots: JobSlots = field(init=False, repr=False)
    # cwl-utils' evaluator toggles a shared logger around each call: one at a time
    _eval_lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def run(self, workflow: ir.Workflow, inputs: Mapping[str, Any]) -> dict[str, Any]:
        self._slots = JobSlots(self.jobs)
        return self._workflow(workflow, inputs, "")

    # --- one workflow level ---------------------------------------------------------------
    def _workflow(self, wf: ir.Workflow, given: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        values: dict[tuple[str | None, str], Any] = {}
        for name, wi in wf.inputs.items():
            value = given.get(name)
            if value is None and wi.port.has_default:
                # a default's relative file locations are relative to the workflow file
                value = describe_files(absolute_locations(wi.port.default, self._base(wf)))
            values[(None, name)] = _load_contents(value) if wi.port.load_contents else value
        steps = {step.name: step for step in wf.steps}

        def store(name: str, outputs: dict[str, Any]) -> None:
            for port in steps[name].outputs:
                values[(name, port)] = outputs.get(port)

        self._slots.run_dag(list(steps), {name: _parents(step) for name, step in steps.items()},
                            lambda name: self._step(wf, steps[name], values, prefix), store)
        result = {}
        for name, out in wf.outputs.items():
            where = f"{wf.source_path or wf.name}: output {name}"
            gathered = [values.get((s.step, s.port)) for s in out.sources]
            if out.link_merge == "merge_flattened":
                gathered = self.materialize(gathered)
            if len(out.sources) > 1 or out.link_merge:
                value = merge_sources(gathered, out.link_merge)
            else:
                value = gathered[0] if gathered else None
            if out.pick_value:
                value = pick_value(self.materialize(value), out.pick_value, where, name)
            result[name] = _check_type(value, out.type, where)
        return result

    @staticmethod
    def _base(wf: ir.Workflow) -> Path:
        return Path(wf.source_path).resolve().parent if wf.source_path else Path.cwd()

    def _step(self, wf: ir.Workflow, step: ir.Step, values: Mapping, prefix: str) -> dict:
        path = f"{prefix}{step.name}"
        where = step.where or path
        inputs: dict[str, Any] = {}
        for port, binding in step.bindings.items():
            inputs[port] = _gather(binding, values, where, self.materialize)
        if step.scatter is None or (step.subworkflow is None and self.splits(step, inputs)):
            return self._job(step, inputs, path, where)
        inputs = {p: self.materialize(v) if p in step.scatter.ports else v
                  for p, v in inputs.items()}
        jobs = scatter_rt.expand(step.scatter, inputs, where)
        results = self._slots.fan_out(
            [partial(self._job, step, {**inputs, **elements}, f"{path}[{_label(index)}]", where)
             for index, elements in jobs])
        return {port: scatter_rt.shape(step.scatter, inputs, jobs,
                                       [r.get(port) for r in results])
                for port in step.outputs}

    def _job(self, step: ir.Step, before: dict[str, Any], label: str, where: str) -> dict:
        dynamic_when = step.when is not None and step.when.static is None
        if dynamic_when or any(b.value_from is not None for b in step.bindings.values()):
            before = self.materialize(before)  # expressions read real values
        before = {p: _load_contents(self.materialize(v)) if step.bindings[p].load_contents
                  else v for p, v in before.items()}
        reqs = list(step.requirements)
        after = dict(before)
        for port, binding in step.bindings.items():
            if binding.value_from is not None:
                with self._eval_lock:
                    after[port] = evaluate(binding.value_from, before,
                                           self_value=before.get(port), requirements=reqs,
                                           cwl_version=self.cwl_version, where=where)
        if not self._condition(step, after, reqs, where):
            return {port: None for port in step.outputs}
        job = {p: v for p, v in after.items() if p in step.inputs}
        if step.subworkflow is not None:
            return self._workflow(step.subworkflow, job, f"{label}/")
        return self._slots.run(partial(self.run_leaf, step, job, label))

    def _condition(self, step: ir.Step, inputs: dict, reqs: list, where: str) -> bool:
        if step.when is None:
            return True
        if step.when.static is not None:
            return step.when.static
        with self._eval_lock:
            result = evaluate(step.when.expression, inputs, requirements=reqs,
                              cwl_version=self.cwl_version, where=where)
        if not isinstance(result, bool):
            raise RunFailed(f"when: {step.when.expression!r} returned {result!r}, "
                            "not a boolean", where=where,
                            hint="a CWL `when` must evaluate to true or false")
        return result


def _label(index: tuple[int, ...]) -> str:
    """A scatter element's part of a job label: ``step[1]``, ``step[0.2]`` (cross product);
    the indices are the plan's (a compile-time element ``step.0.2`` is the same job)."""
    return ".".join(str(i) for i in index)


def label_indices(label: str) -> tuple[int, ...]:
    """Every scatter index in a job label, outermost first: ``sub[1]/leaf[0.2]`` → (1, 0, 2)."""
    return tuple(int(i) for part in re.findall(r"\[([0-9.]+)\]", label)
                 for i in part.split("."))


_SCALARS = {"File", "Directory", "string", "int", "long", "float", "double", "boolean"}


def _check_type(value: Any, cwl_type: str, where: str) -> Any:
    """A list where the workflow declares a single value is an error (e.g. pickValue
    all_non_null into a non-array output), not something to pass on silently."""
    if isinstance(value, list) and cwl_type.rstrip("?") in _SCALARS:
        raise RunFailed(f"the value is a list but the output type is {cwl_type}", where=where,
                        hint="declare an array type, or pick one value (first_non_null)")
    if value is None and cwl_type in _SCALARS:
        raise RunFailed(f"no value for a required {cwl_type} output", where=where,
                        hint=f"make the output optional ({cwl_type}?) if it may be missing")
    return value


def _parents(step: ir.Step) -> set[str]:
    """The steps of the same level whose outputs ``step`` reads."""
    return {source.step for binding in step.bindings.values() for source in binding.sources
            if source.step is not None}


def _gather(binding: ir.Binding, values: Mapping, where: str,
            materialize: Callable[[Any], Any]) -> Any:
    gathered = [values.get((s.step, s.port)) for s in binding.sources]
    if binding.link_merge == "merge_flattened":
        gathered = materialize(gathered)  # a dataset's files are flattened like a list's
    if len(binding.sources) > 1 or binding.link_merge:
        value = merge_sources(gathered, binding.link_merge)
    else:
        value = gathered[0] if gathered else None
    try:
        if binding.pick_value:
            value = pick_value(materialize(value), binding.pick_value, where, binding.port)
    except SwfflowError as exc:
        raise RunFailed(exc.what, where=exc.where, hint=exc.hint) from None
    if value is None and binding.has_default:
        value = binding.default
    return value


def _load_contents(value: Any) -> Any:
    if isinstance(value, dict) and value.get("class") == "File" and "contents" not in value:
        location = str(value.get("location") or value.get("path"))
        parsed = urlparse(location)
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else location)
        with open(path, "rb") as handle:
            data = handle.read(_CONTENTS_LIMIT + 1)
        if len(data) > _CONTENTS_LIMIT:
            raise RunFailed(f"loadContents: {path} is larger than 64 KiB",
                            hint="CWL loads at most 64 KiB of a file's contents")
        return {**value, "contents": data.decode("utf-8", errors="replace")}
    if isinstance(value, list):
        return [_load_contents(v) for v in value]
    return value
