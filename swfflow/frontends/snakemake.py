"""The Snakemake front end: a Snakefile's job graph → the IR (docs/snakemake.md).

Snakemake builds the DAG (:mod:`.snakemake_dag`, the only module on its private API); this
module only reads the snapshot. Mapping:

- a rule with jobs and a command → one step (``rule all``-like aggregate rules are not steps;
  their inputs become the workflow outputs);
- input ports whose pattern names a wildcard → the step is scattered over them (JEDI splits the
  dataset, one file per job); a rule with wildcards but no such input → a scatter over the
  wildcard values (one task per value);
- input files no job produces → workflow inputs: those read per wildcard are one ``File[]``
  input, the run's stream unless every reader says ``swf_mode="complete"``;
- input files made by another rule → links; the consumer's ``params: swf_mode="stream"|
  "complete"`` sets the mode, default as in docs/cwl-extensions.md (stream for per-file chains,
  complete for gathers);
- ``threads``, ``resources`` (mem_mb, disk_mb, runtime minutes), ``container``, ``retries`` and
  ``params: swf_files_per_job/swf_gb_per_job/...`` → resources, container, retries, sizing;
- PanDA's pchain dialect (``shell: "prun"|"phpo"|"junction"`` with ``opt_*`` params) → native
  steps, as the CWL front end makes them;
- checkpoints → a clear "not supported" error (exit 33): their DAG is unknowable before they run.
"""

from __future__ import annotations

import os
import re
import shlex
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swfflow import ir
from swfflow.errors import UnsupportedFeature, WorkflowError
from swfflow.frontends.cwl_pchain import ALLOWED_INPUTS, DATASET_INPUTS
from swfflow.frontends.snakemake_dag import SnakeDag, SnakeJob, SnakeRule, build_dag

_MODES = {"stream": ir.EdgeMode.STREAM, "complete": ir.EdgeMode.COMPLETE}
_NATIVE = {"prun": ir.StepKind.PRUN, "phpo": ir.StepKind.PHPO, "junction": ir.StepKind.JUNCTION}
# rule params that steer swfflow rather than the command (never passed on as values)
_SIZING_PARAMS = {"swf_files_per_job": "files_per_job", "swf_max_files_per_job":
                  "max_files_per_job", "swf_gb_per_job": "gb_per_job",
                  "swf_events_per_job": "events_per_job", "swf_n_jobs": "n_jobs"}
_CONTROL_PARAMS = {"swf_mode", "payload", *_SIZING_PARAMS}
_PLACEHOLDER = re.compile(r"\{(input|output|params|log|threads|wildcards)(?:\.(\w+))?(?::q)?\}")
_TOKEN_KIND = {"input": "in", "output": "out", "params": "param", "wildcards": "param"}


def load_workflow(path: str | os.PathLike, inputs: Mapping[str, Any] | None = None, *,
                  strict: bool = False, config: Mapping[str, Any] | None = None) -> ir.Workflow:
    """Build the Snakefile's job graph with ``config`` (``--config k=v``; keys of ``inputs``
    are config values too, ``config`` wins) and lower it to the IR. ``strict`` adds nothing:
    Snakemake's own parse is already the full check."""
    merged = {**dict(inputs or {}), **dict(config or {})}
    return lower(build_dag(path, merged), _workflow_name(Path(path)))


def _workflow_name(path: Path) -> str:
    if path.name == "Snakefile":
        return path.resolve().parent.name or "snakemake"
    return path.stem


def lower(dag: SnakeDag, name: str) -> ir.Workflow:
    for rule in dag.rules.values():
        if rule.is_checkpoint:
            raise UnsupportedFeature(
                f"rule {rule.name!r} is a checkpoint; swfflow compiles a DAG that is known "
                "before anything runs", where=rule.where,
                hint="make the rule's outputs explicit (e.g. expand over the run's files), or "
                     "run this workflow with plain snakemake")
    return _Lowering(dag, name).workflow()


class _Lowering:
    def __init__(self, dag: SnakeDag, name: str):
        self.dag = dag
        self.wf = ir.Workflow(name=name, source_path=dag.snakefile)
        self.jobs_of: dict[str, list[SnakeJob]] = defaultdict(list)
        for job in dag.jobs:
            self.jobs_of[job.rule].append(job)
        self.steps = [r for r in dag.rules.values() if not r.norun]
        self.step_names = {r.name for r in self.steps}
        # file → (rule, port) that writes it
        self.producer: dict[str, tuple[str, str]] = {}
        for job in dag.jobs:
            if job.rule in self.step_names:
                native = (dag.rules[job.rule].shell or "").strip() in _NATIVE
                for port, files in job.outputs.items():
                    for f in files:  # a pchain rule's output is a label for its outDS
                        self.producer[f] = (job.rule, "outDS" if native else port)
        self.external: dict[tuple[str, ...], str] = {}  # external file set → workflow input

    # --- the whole workflow -------------------------------------------------------------
    def workflow(self) -> ir.Workflow:
        links: list[ir.Link] = []
        for rule in sorted(self.steps, key=lambda r: r.name):
            step, step_links = self.step(rule)
            self.wf.add_step(step)
            links += step_links
        for link in sorted(set(links), key=lambda lk: (lk.src_step, lk.dst_step, lk.dst_port,
                                                       lk.src_port)):
            self.wf.add_link(link)
        self.mark_streams()
        self.outputs()
        return self.wf

    def mark_streams(self) -> None:
        """A per-wildcard external input is the run's stream unless every reader declines."""
        for step in self.wf.steps:
            for port in step.streaming_inputs:
                source = step.bindings[port].sources[0]
                wi = self.wf.inputs[source.port]
                self.wf.inputs[source.port] = ir.WorkflowInput(wi.port, stream=True)

    def outputs(self) -> None:
        for target in self.dag.targets:
            rule = self.dag.rules.get(target)
            if rule is None or not rule.norun:
                continue
            for job in self.jobs_of[target]:
                for port, files in job.inputs.items():
                    sources = sorted({self.producer[f] for f in files if f in self.producer})
                    if sources:
                        self.wf.outputs[port] = ir.WorkflowOutput(
                            port, "File" if len(files) == 1 else "File[]",
                            tuple(ir.Source(r, p) for r, p in sources))

    # --- one rule -----------------------------------------------------------------------
    def step(self, rule: SnakeRule) -> tuple[ir.Step, list[ir.Link]]:
        jobs = self.jobs_of[rule.name]
        native = _NATIVE.get((rule.shell or "").strip())
        if native is not None:
            return self.native_step(rule, native, jobs)
        mode = _mode(rule)
        scattered = [p for p, named in rule.input_patterns.items() if named and rule.wildcard_names
                     and all(len(j.inputs.get(p, ())) == 1 for j in jobs)]
        inputs: dict[str, ir.Port] = {}
        bindings: dict[str, ir.Binding] = {}
        links: list[ir.Link] = []
        streaming: list[str] = []
        for port in jobs[0].inputs:
            files = sorted({f for j in jobs for f in j.inputs[port]})
            per_job = port in scattered
            inputs[port] = ir.Port(port, ir.PortKind.FILE if per_job or len(jobs[0].inputs[port]) == 1
                                   else ir.PortKind.FILES,
                                   "File" if per_job or len(jobs[0].inputs[port]) == 1 else "File[]")
            made = sorted({self.producer[f] for f in files if f in self.producer})
            if made:
                if len(made) < len({f for f in files}) and any(f not in self.producer for f in files):
                    raise UnsupportedFeature(
                        f"rule {rule.name!r} input {port!r} mixes files made by rules with files "
                        "nobody makes", where=rule.where,
                        hint="give the external files their own named input")
                bindings[port] = ir.Binding(port, tuple(ir.Source(r, p) for r, p in made),
                                            link_merge="merge_flattened" if len(made) > 1 else None)
                for src_rule, src_port in made:
                    links.append(ir.Link(src_rule, src_port, rule.name, port,
                                         mode or self.default_mode(per_job, src_rule)))
                continue
            wf_input = self.workflow_input(port, files, per_job, jobs[0].inputs[port])
            bindings[port] = ir.Binding(port, (ir.Source(None, wf_input),))
            if per_job and mode is not ir.EdgeMode.COMPLETE:
                streaming.append(port)
        scatter = None
        if scattered:
            scatter = ir.Scatter(tuple(scattered), ir.ScatterMethod.DOTPRODUCT)
        elif rule.wildcard_names and jobs:
            scatter = self.wildcard_scatter(rule, jobs, inputs, bindings)
        for key, value in sorted(rule.params.items()):
            if key in _CONTROL_PARAMS or not _plain_value(value) or key in inputs:
                continue
            inputs[key] = ir.Port(key, ir.PortKind.PARAM, _param_type(value), value, True)
            bindings[key] = ir.Binding(key, default=value, has_default=True)
        outputs = {port: ir.Port(port, ir.PortKind.FILE, "File" if len(files) == 1 else "File[]")
                   for port, files in jobs[0].outputs.items()}
        step = ir.Step(
            name=rule.name, kind=ir.StepKind.COMMAND, inputs=inputs, outputs=outputs,
            bindings=bindings, scatter=scatter, resources=_resources(rule),
            sizing=_sizing(rule), container=_container(rule.container), retries=rule.retries,
            command=_command(rule.shell), streaming_inputs=tuple(sorted(streaming)),
            where=rule.where)
        return step, links

    def default_mode(self, consumer_per_file: bool, producer: str) -> ir.EdgeMode:
        """docs/cwl-extensions.md: stream for a per-file chain, complete for gathers."""
        producer_scattered = bool(self.dag.rules[producer].wildcard_names)
        return ir.EdgeMode.STREAM if consumer_per_file and producer_scattered \
            else ir.EdgeMode.COMPLETE

    def workflow_input(self, port: str, files: list[str], per_job: bool,
                       first: list[str]) -> str:
        key = tuple(files)
        if key in self.external:
            return self.external[key]
        name = port
        while name in self.wf.inputs:
            name = f"{name}_"
        self.external[key] = name
        as_files = [{"class": "File", "location": f} for f in files]
        if per_job or len(first) != 1:  # a list, also when empty (a folder with no files yet)
            self.wf.inputs[name] = ir.WorkflowInput(
                ir.Port(name, ir.PortKind.FILES, "File[]", as_files, True))
        else:
            self.wf.inputs[name] = ir.WorkflowInput(
                ir.Port(name, ir.PortKind.FILE, "File", as_files[0], True))
        return name

    @staticmethod
    def wildcard_scatter(rule: SnakeRule, jobs: list[SnakeJob], inputs: dict[str, ir.Port],
                         bindings: dict[str, ir.Binding]) -> ir.Scatter:
        ports = []
        for wildcard in rule.wildcard_names:
            values = [j.wildcards.get(wildcard) for j in sorted(jobs, key=lambda j: j.jobid)]
            port = f"wildcard_{wildcard}"
            inputs[port] = ir.Port(port, ir.PortKind.PARAM, "string[]")
            bindings[port] = ir.Binding(port, default=values, has_default=True)
            ports.append(port)
        return ir.Scatter(tuple(ports), ir.ScatterMethod.DOTPRODUCT)

    # --- pchain dialect -----------------------------------------------------------------
    def native_step(self, rule: SnakeRule, kind: ir.StepKind,
                    jobs: list[SnakeJob]) -> tuple[ir.Step, list[ir.Link]]:
        type_name = (rule.shell or "").strip()
        options = {k: v for k, v in rule.params.items() if k.startswith("opt_")}
        unknown = sorted(set(options) - ALLOWED_INPUTS[kind])
        if unknown:
            raise WorkflowError(f"unknown parameter(s) {', '.join(unknown)} for {type_name} rule "
                                f"{rule.name!r}", where=rule.where,
                                hint=f"{type_name} takes {', '.join(sorted(ALLOWED_INPUTS[kind]))}")
        label_of = {f: src for f, src in self.producer.items()}
        native: dict[str, Any] = {"type": type_name}
        sources: dict[str, list[str]] = {}
        bindings: dict[str, ir.Binding] = {}
        links: list[ir.Link] = []
        for port, value in sorted(options.items()):
            labels = value if isinstance(value, list) else [value]
            upstream = [label_of[str(v)] for v in labels if str(v) in label_of]
            if upstream:
                sources[port] = [f"{r}/{p}" for r, p in upstream]
                bindings[port] = ir.Binding(port, tuple(ir.Source(r, p) for r, p in upstream))
                links += [ir.Link(r, p, rule.name, port, ir.EdgeMode.COMPLETE)
                          for r, p in upstream]
            else:
                native[port] = value
                bindings[port] = ir.Binding(port, default=value, has_default=True)
        if sources:
            native["sources"] = sources
        inputs = {p: ir.Port(p, ir.PortKind.DATASET if p in DATASET_INPUTS else ir.PortKind.PARAM)
                  for p in sorted(options)}
        outputs = {"outDS": ir.Port("outDS", ir.PortKind.DATASET, "string")}
        step = ir.Step(name=rule.name, kind=kind, inputs=inputs, outputs=outputs,
                       bindings=bindings, native=native, tool_uri=type_name, where=rule.where)
        return step, links


def _mode(rule: SnakeRule) -> ir.EdgeMode | None:
    value = rule.params.get("swf_mode")
    if value is None:
        return None
    if value not in _MODES:
        raise WorkflowError(f"rule {rule.name!r}: swf_mode={value!r}", where=rule.where,
                            hint='params: swf_mode="stream" or swf_mode="complete"')
    return _MODES[value]


def _resources(rule: SnakeRule) -> ir.Resources:
    res = rule.resources
    mem = res.get("mem_mb") or (round(res["mem_mib"] * 1.048576) if res.get("mem_mib") else None)
    disk = res.get("disk_mb") or (round(res["disk_mib"] * 1.048576) if res.get("disk_mib")
                                  else None)
    runtime = res.get("runtime")
    for what, value in (("mem_mb", mem), ("disk_mb", disk), ("runtime", runtime)):
        if value is not None and not isinstance(value, int | float):
            raise WorkflowError(f"rule {rule.name!r}: resource {what}={value!r} is not a number",
                                where=rule.where, hint="give mem_mb/disk_mb in MB and runtime "
                                                       "in minutes")
    return ir.Resources(cores=rule.threads if rule.threads > 1 else None,
                        mem_mb=int(mem) if mem else None, disk_mb=int(disk) if disk else None,
                        walltime_s=int(runtime * 60) if runtime else None)


def _sizing(rule: SnakeRule) -> ir.Sizing:
    values = {}
    for param, attribute in _SIZING_PARAMS.items():
        value = rule.params.get(param)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise WorkflowError(f"rule {rule.name!r}: {param}={value!r}", where=rule.where,
                                hint=f"{param} is a positive number")
        values[attribute] = value
    return ir.Sizing(**values)


def _container(image: str | None) -> ir.Container | None:
    if not image:
        return None
    # CWL's dockerPull has no scheme; keep one spelling of a Docker image in the IR
    return ir.Container(image.removeprefix("docker://"), required=True)


def _command(shell: str | None) -> tuple[str, ...]:
    """Display argv with the IR's placeholders: {input.stf:q} → {in:stf}."""
    if not shell:
        return ()

    def token(match: re.Match) -> str:
        kind, name = match.group(1), match.group(2)
        return f"{{{_TOKEN_KIND.get(kind, kind)}:{name}}}" if name else f"{{{kind}}}"

    text = _PLACEHOLDER.sub(token, " ".join(shell.split()))
    try:
        return tuple(shlex.split(text))
    except ValueError:
        return tuple(text.split())


def _plain_value(value: Any) -> bool:
    if isinstance(value, str | int | float | bool) or value is None:
        return True
    if isinstance(value, list | tuple):
        return all(_plain_value(v) for v in value)
    return False


def _param_type(value: Any) -> str:
    table = {bool: "boolean", int: "int", float: "float", str: "string"}
    return table.get(type(value), "Any")
