"""The planner: IR → :class:`~swfflow.plan.model.Plan` (pure, deterministic).

Mapping rules (docs/design.md has the reasoning):

1. One leaf step → one JEDI task per run; per element when scattering over *parameter* values.
   Scattering over the *files of a dataset* is JEDI's own job splitting (``nFilesPerJob``).
2. Task names come from the profile's pattern and are the idempotency key (``uniqueTaskName``).
3. A step reading a stream input → ``dsForIN`` = the run dataset, ``runUntilClosed``. A stream
   edge → ``noWaitParent`` + ``parentTaskName`` so JEDI pipelines; a complete edge → the driver
   releases the task when its parents are done. A dynamic ``when`` is left to the driver.
4. Every output port → a Rucio dataset, created open and closed when its producer is done; the
   stream dataset is closed at end of run and replicated to the profile's rules.
5. Resources, container, site, VO, labels and names come from the step and the profile.
"""

from __future__ import annotations

import itertools
import re
from typing import Any
from urllib.parse import urldefrag

from swfflow.errors import WorkflowError
from swfflow.ir import Leaf, PortKind, StepKind, Workflow, iter_leaves, qualified_graph
from swfflow.plan import jedi
from swfflow.plan.floats import spelled
from swfflow.plan.flow import flow_of
from swfflow.plan.model import (
    CLOSE_AT_END_RUN, CLOSE_WITH_PRODUCER, RELEASE_AFTER_PARENTS, RELEASE_AT_START,
    RELEASE_WITH_PARENTS, RUN, DatasetSpec, ParentLink, Plan, ReplicationRule, TaskInput,
    TaskSpec,
)
from swfflow.plan.paths import base_dirs, display_path, relative, relative_locations
from swfflow.plan.profile import Profile, load_profile
from swfflow.plan.sources import OriginMap, resolve_origins, workflow_output_origins

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_NATIVE_KINDS = {StepKind.PRUN, StepKind.PHPO, StepKind.JUNCTION}


def safe_name(text: str) -> str:
    """A step path or workflow name as a Rucio/PanDA name part (``a/b`` → ``a.b``)."""
    return _UNSAFE.sub("_", text.replace("/", "."))


def compile_workflow(workflow: Workflow, inputs: dict[str, Any] | None = None,
                     profile: Profile | None = None, run: int | str | None = None) -> Plan:
    """Compile the IR into a plan. ``run`` None keeps the :data:`RUN` placeholder."""
    return _Planner(workflow, inputs or {}, profile or load_profile(),
                    RUN if run is None else str(run)).plan()


class _Planner:
    def __init__(self, workflow: Workflow, inputs: dict[str, Any], profile: Profile, run: str):
        self.wf = workflow
        self.inputs = inputs
        self.profile = profile
        self.run = run
        self.base = base_dirs(workflow.source_path)
        self.names = {"run": run, "user": profile.user,
                      "workflow": safe_name(profile.workflow or workflow.name)}
        self.leaves = list(iter_leaves(workflow))
        self.flat = qualified_graph(workflow)
        self.origins: OriginMap = resolve_origins(workflow)
        self.skipped = {leaf.path for leaf in self.leaves if _statically_false(leaf)}
        self.stream_dids = self._stream_datasets()
        self.output_dids = self._output_datasets()
        self.expansions = {leaf.path: self._expand(leaf) for leaf in self.leaves
                           if leaf.path not in self.skipped}
        self.native_params: dict[str, dict[str, Any]] = {}  # pchain leaves planned so far
        self.workflow_output_leaves = {o.name for origins in workflow_output_origins(workflow)
                                       .values() for o in origins if o.kind == "step"}
        self.key_index = {_key(path, idx): (path, idx)
                          for path, expansion in self.expansions.items() for idx, _ in expansion}

    # --- names ----------------------------------------------------------------------------
    def _fmt(self, pattern: str, **extra: str) -> str:
        try:
            return pattern.format(**self.names, **extra)
        except (KeyError, IndexError) as exc:
            raise WorkflowError(f"profile name pattern {pattern!r} uses unknown field {exc}",
                                hint="fields: run, user, workflow, step, port, input") from None

    def task_name(self, path: str, index: tuple[int, ...]) -> str:
        name = self._fmt(self.profile.names.task, step=safe_name(path))
        return name + "".join(f".{i}" for i in index)

    # --- datasets -------------------------------------------------------------------------
    def _stream_datasets(self) -> dict[str, str]:
        streams = self.wf.stream_inputs()
        dids = {}
        for name in streams:
            ds_name = self._fmt(self.profile.names.stream_dataset, input=safe_name(name))
            if len(streams) > 1 and "{input}" not in self.profile.names.stream_dataset:
                ds_name += f".{safe_name(name)}"
            dids[name] = f"{self.profile.scopes.stream}:{ds_name}"
        return dids

    def _output_datasets(self) -> dict[tuple[str, str], str]:
        dids = {}
        for leaf in self.leaves:
            if leaf.path in self.skipped or leaf.step.kind is StepKind.EXPRESSION:
                continue
            for port in sorted(leaf.step.outputs):
                name = self._fmt(self.profile.names.output_dataset, step=safe_name(leaf.path),
                                 port=safe_name(port))
                dids[(leaf.path, port)] = f"{self.profile.scopes.output}:{name}"
        return dids

    def _log_dataset(self, path: str) -> str:
        name = self._fmt(self.profile.names.log_dataset, step=safe_name(path))
        return f"{self.profile.scopes.output}:{name}"

    def datasets(self) -> tuple[DatasetSpec, ...]:
        rucio = self.profile.rucio
        specs = [DatasetSpec(did=did, role="stream", port=name, close=CLOSE_AT_END_RUN,
                             rules=_rules(rucio.stream_rules))
                 for name, did in sorted(self.stream_dids.items())]
        specs += [DatasetSpec(did=did, role="output", producer=path, port=port,
                              close=CLOSE_WITH_PRODUCER, rules=_rules(rucio.output_rules))
                  for (path, port), did in sorted(self.output_dids.items())]
        specs += [DatasetSpec(did=self._log_dataset(path), role="log", producer=path,
                              close=CLOSE_WITH_PRODUCER)
                  for path in sorted(self.expansions)
                  if self.wf_leaf(path).step.kind is not StepKind.EXPRESSION]
        return tuple(specs)

    def wf_leaf(self, path: str) -> Leaf:
        return self.flat.nodes[path]["leaf"]

    # --- per-port data --------------------------------------------------------------------
    def port_datasets(self, leaf: Leaf) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for port in sorted(leaf.step.bindings):
            dids = []
            for origin in self.origins.get((leaf.path, port), ()):
                if origin.kind == "input" and origin.name in self.stream_dids:
                    dids.append(self.stream_dids[origin.name])
                elif origin.kind == "step" and (origin.name, origin.port) in self.output_dids:
                    dids.append(self.output_dids[(origin.name, origin.port)])
            if dids and leaf.step.inputs.get(port) is not None and \
                    leaf.step.inputs[port].kind is PortKind.PARAM:
                continue  # a value produced by a step: resolved by the driver
            if dids:
                found[port] = dids
        return found

    def port_value(self, leaf: Leaf, port: str) -> tuple[bool, Any]:
        """(known, value) of a parameter input at compile time."""
        binding = leaf.step.bindings[port]
        origins = self.origins.get((leaf.path, port), ())
        if origins and all(o.kind == "input" for o in origins) and len(origins) == 1:
            name = origins[0].name
            if name in self.inputs:
                return True, self.inputs[name]
            wi = self.wf.inputs.get(name)
            if wi is not None and wi.port.has_default:
                return True, wi.port.default
            if binding.has_default:
                return True, binding.default
            return True, None
        if not binding.sources and binding.has_default:
            return True, binding.default
        if not binding.sources and binding.value_from is None:
            return True, None
        return False, None

    # --- scatter over parameter values ----------------------------------------------------
    def _expand(self, leaf: Leaf) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
        """[(index, {port: element})] for a parameter scatter; [((), {})] otherwise."""
        scatter = leaf.step.scatter
        if scatter is None:
            return [((), {})]
        datasets = self.port_datasets(leaf)
        ports = [p for p in scatter.ports if p not in datasets]
        if not ports or len(ports) != len(scatter.ports):
            return [((), {})]  # over files: JEDI splits (mixed file/value scatter: driver)
        values = {}
        for port in ports:
            known, value = self.port_value(leaf, port)
            if not known or leaf.step.bindings[port].value_from is not None:
                return [((), {})]  # data-dependent scatter: the driver expands it
            if not isinstance(value, list):
                raise WorkflowError(f"scatter input {port!r} is not a list: {value!r}",
                                    where=leaf.step.where or leaf.path,
                                    hint="give a list value for every scattered input")
            values[port] = value
        if scatter.method.value == "dotproduct":
            lengths = {len(v) for v in values.values()}
            if len(lengths) > 1:
                raise WorkflowError(
                    f"dotproduct scatter over inputs of different lengths "
                    f"{ {p: len(v) for p, v in values.items()} }",
                    where=leaf.step.where or leaf.path,
                    hint="use flat_crossproduct, or give lists of equal length")
            combos = [((i,), {p: values[p][i] for p in ports}) for i in range(lengths.pop())]
        else:
            ranges = [range(len(values[p])) for p in ports]
            combos = [(idx, {p: values[p][i] for p, i in zip(ports, idx)})
                      for idx in itertools.product(*ranges)]
        return combos

    def task_keys(self, path: str) -> list[str]:
        return [_key(path, idx) for idx, _ in self.expansions[path]]

    # --- tasks ----------------------------------------------------------------------------
    def tasks(self) -> tuple[TaskSpec, ...]:
        specs = []
        for leaf in self.leaves:
            if leaf.path in self.skipped:
                continue
            for index, elements in self.expansions[leaf.path]:
                specs.append(self.task(leaf, index, elements))
        return tuple(specs)

    def task(self, leaf: Leaf, index: tuple[int, ...], elements: dict[str, Any]) -> TaskSpec:
        step, path = leaf.step, leaf.path
        key = _key(path, index)
        name = self.task_name(path, index)
        datasets = self.port_datasets(leaf)
        split, split_port = self.split(leaf, datasets)
        outputs = {port: self.output_dids[(path, port)] for port in sorted(step.outputs)
                   if (path, port) in self.output_dids}
        parents = self.parents(leaf)
        modes = {p.mode for p in parents}
        if step.kind in _NATIVE_KINDS and len(parents) == 1:
            modes = {"stream"}  # pchain pipelines every single-parent step (noWaitParent)
        release = (RELEASE_AFTER_PARENTS if "complete" in modes else
                   RELEASE_WITH_PARENTS if parents else RELEASE_AT_START)
        inputs, job = self.task_inputs(leaf, datasets, split, elements)
        log_ds = None if step.kind is StepKind.EXPRESSION else self._log_dataset(path)
        params = self.params(leaf, key, name, split, outputs, log_ds, parents, release)
        whens = [c.expression for c in (*leaf.enclosing_when, step.when)
                 if c is not None and c.static is None]
        payload = {"kind": _payload_kind(step.kind), "step": path,
                   "tool": relative(spelled(step.tool), self.base), "job": relative_locations(job, self.base),
                   "split_port": split_port,
                   "gather_ports": {p: d[0] if len(d) == 1 else d for p, d in datasets.items()
                                    if p != split_port}}
        if split_port is None and datasets and (step.sizing.files_per_job or
                                                step.sizing.gb_per_job):
            # the user sized the jobs of a step that reads whole datasets (swf:Sizing): it
            # runs in chunks as the files come (one output per chunk), not once at the end
            payload["chunked"] = True
        if step.scatter is not None and not index and split_port is None:
            payload["scatter"] = {"ports": list(step.scatter.ports),
                                  "method": step.scatter.method.value}
        if step.native:
            payload["native"] = step.native
        if step.tool is not None:  # what `swfflow job` needs to rebuild the standalone tool
            payload["tool_file"] = relative(urldefrag(step.tool_uri or "")[0], self.base)
            payload["inherited"] = {
                key: relative(_not_in_tool(getattr(step, key), step.tool.get(key)), self.base)
                for key in ("requirements", "hints")}
        return TaskSpec(key=key, step=path, name=name, kind=step.kind.value, params=params,
                        inputs=inputs, outputs=outputs, log_dataset=log_ds, parents=parents,
                        release=release, streaming=split.run_until_closed,
                        when=" && ".join(whens) or None, scatter_index=index,
                        payload=payload)

    def split(self, leaf: Leaf, datasets: dict[str, list[str]]) -> tuple[jedi.Split, str | None]:
        step, sizing, d = leaf.step, leaf.step.sizing, self.profile.defaults
        scattered = set(step.scatter.ports if step.scatter else ())
        per_file = [p for p in sorted(datasets) if p in scattered or
                    (leaf.enclosing_scatter and p in step.streaming_inputs)]
        if not per_file and leaf.enclosing_scatter:
            per_file = sorted(datasets)[:1]
        if per_file:
            port = per_file[0]
            master = datasets[port][0]
            files = sizing.files_per_job or (None if sizing.gb_per_job else 1)
        elif datasets:
            port = None
            master = datasets[sorted(datasets)[0]][0]
            files = sizing.files_per_job or (None if sizing.gb_per_job else
                                             d.gather_files_per_job)
        else:
            return jedi.Split(master=None, events_per_job=sizing.events_per_job,
                              n_jobs=sizing.n_jobs), None
        secondary = tuple(sorted({did for dids in datasets.values() for did in dids} - {master}))
        return jedi.Split(
            master=master, files_per_job=files,
            # a gather reads its whole input in one job: the default maximum does not cap it
            max_files_per_job=sizing.max_files_per_job or (
                d.max_files_per_job if per_file or sizing.files_per_job
                else max(d.max_files_per_job, files or 0)),
            gb_per_job=sizing.gb_per_job,
            run_until_closed=master in self.stream_dids.values(), secondary=secondary), port

    def parents(self, leaf: Leaf) -> tuple[ParentLink, ...]:
        links = []
        for pred in sorted(self.flat.predecessors(leaf.path)):
            if pred in self.skipped:
                continue
            mode = self.flat.edges[pred, leaf.path]["mode"].value
            dids = tuple(sorted(did for (p, _), did in self.output_dids.items() if p == pred))
            links += [ParentLink(key=k, mode=mode, datasets=dids) for k in self.task_keys(pred)]
        return tuple(links)

    def task_inputs(self, leaf: Leaf, datasets: dict[str, list[str]], split: jedi.Split,
                    elements: dict[str, Any]) -> tuple[tuple[TaskInput, ...], dict[str, Any]]:
        inputs, job = [], {}
        for port in sorted(leaf.step.bindings):
            binding = leaf.step.bindings[port]
            sources = tuple(str(s) for s in binding.sources)
            if port in datasets:
                for did in datasets[port]:
                    inputs.append(TaskInput(port=port, dataset=did, master=did == split.master,
                                            sources=sources))
                continue
            if port in elements:
                job[port] = elements[port]
                inputs.append(TaskInput(port=port, value=elements[port], sources=sources))
                continue
            known, value = self.port_value(leaf, port)
            expression = binding.value_from
            if known and expression is None:
                job[port] = value
                inputs.append(TaskInput(port=port, value=relative_locations(value, self.base),
                                        sources=sources))
            else:
                inputs.append(TaskInput(port=port, expression=expression, sources=sources))
        return tuple(inputs), job

    def params(self, leaf: Leaf, key: str, name: str, split: jedi.Split,
               outputs: dict[str, str], log_ds: str | None, parents: tuple[ParentLink, ...],
               release: str) -> dict[str, Any]:
        step = leaf.step
        if step.kind is StepKind.EXPRESSION:
            return {}  # evaluated by the driver; never a PanDA task
        if step.kind in _NATIVE_KINDS:
            from swfflow.plan.pchain import pchain_task_params
            out_ds = outputs[sorted(outputs)[0]] if outputs else self._log_dataset(leaf.path)
            params = pchain_task_params(
                step, task_name=name, out_ds=out_ds, profile=self.profile.as_dict(),
                upstream=self.native_upstream(leaf),
                is_workflow_output=leaf.path in self.workflow_output_leaves)
            self.native_params[leaf.path] = params
        else:
            params = jedi.common_fields(self.profile, name)
            params.update(jedi.resource_fields(step.resources, self.profile, step.retries,
                                               step.container.image if step.container else None))
            params.update(jedi.split_fields(split, step=leaf.path))
            params["jobParameters"], params["log"] = jedi.job_parameters(
                key, split, outputs, log_ds or "")
        if release == RELEASE_WITH_PARENTS:
            params["noWaitParent"] = True
            params["parentTaskName"] = self.task_name(*self.key_index[parents[0].key])
        return params

    def native_upstream(self, leaf: Leaf) -> dict[str, dict[str, Any]]:
        """pchain names an input dataset after its parent task: source → parent params.
        Leaves come in topological order, so parents are already planned."""
        upstream = {}
        for port, binding in leaf.step.bindings.items():
            step_sources = [s for s in binding.sources if s.step is not None]
            producers = [o for o in self.origins.get((leaf.path, port), ()) if o.kind == "step"]
            if len(step_sources) != len(producers):
                continue  # a sub-workflow in between: no one-to-one naming
            for src, origin in zip(step_sources, producers):
                if origin.name in self.native_params:
                    upstream[str(src)] = self.native_params[origin.name]
        return upstream

    # --- the whole plan -------------------------------------------------------------------
    def plan(self) -> Plan:
        outputs = {name: [f"{o.name}/{o.port}" if o.kind == "step" else o.name for o in origins]
                   for name, origins in workflow_output_origins(self.wf).items()}
        return Plan(workflow=self.wf.name, source=display_path(self.wf.source_path),
                    run=self.run, profile=self.profile.as_dict(), datasets=self.datasets(),
                    tasks=self.tasks(), inputs=relative_locations(self.inputs, self.base),
                    outputs=outputs, skipped=tuple(sorted(self.skipped)),
                    flow=flow_of(self.wf, self.base))


def _key(path: str, index: tuple[int, ...]) -> str:
    return path + "".join(f".{i}" for i in index)


def _statically_false(leaf: Leaf) -> bool:
    conditions = (*leaf.enclosing_when, leaf.step.when)
    return any(c is not None and c.static is False for c in conditions)


def _rules(rules: list) -> tuple[ReplicationRule, ...]:
    return tuple(ReplicationRule(r.rse_expression, r.copies, r.lifetime_s) for r in rules)


def _not_in_tool(items: tuple[dict[str, Any], ...], own: Any) -> list[dict[str, Any]]:
    """The requirements/hints a step inherits from its workflows (the tool has its own)."""
    own_classes = set(own) if isinstance(own, dict) else {str(i.get("class")) for i in own or ()}
    return [dict(i) for i in items if str(i.get("class")) not in own_classes]


def _payload_kind(kind: StepKind) -> str:
    return {StepKind.COMMAND: "cwl", StepKind.EXPRESSION: "cwl-expression"}.get(kind, kind.value)
