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
- every step runs: its process is Snakemake executing the named job in the Snakefile's folder
  (:mod:`.snakemake_tools`, ``swfflow snakemake-job``);
- checkpoints → the rules after them are run-time scatters of a checkpoint expansion step
  (:mod:`.snakemake_checkpoints`); a checkpoint after a checkpoint is one exit-33 error;
- whatever else Snakemake accepts compiles or is refused in one line (file:line, hint): an empty
  plan (exit 2), a loop between rules (33), a slip of this module (33, naming the rule).

The per-rule mapping and checks are in :mod:`.snakemake_rules`; a rule module (``*.smk``) is
checked on its own by :func:`check_module`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx

from swfflow import ir
from swfflow.errors import SwfflowError, UnsupportedFeature, WorkflowError
from swfflow.frontends.cwl_pchain import DATASET_INPUTS
from swfflow.frontends.snakemake_dag import (
    SnakeDag,
    SnakeJob,
    SnakeRule,
    build_dag,
    parse_rules,
    paused_gc,
)
from swfflow.frontends.snakemake_checkpoints import add_post_checkpoint_steps
from swfflow.frontends.snakemake_tools import add_snakefile_input, rule_tool
from swfflow.frontends.snakemake_rules import (
    CONTROL_PARAMS,
    NATIVE,
    check_rule,
    display_command,
    edge_mode,
    native_options,
    param_type,
    plain_value,
    step_container,
    step_resources,
    step_sizing,
)


def load_workflow(path: str | os.PathLike, inputs: Mapping[str, Any] | None = None, *,
                  strict: bool = False, config: Mapping[str, Any] | None = None) -> ir.Workflow:
    """Build the Snakefile's job graph with ``config`` (``--config k=v``; keys of ``inputs``
    are config values too, ``config`` wins) and lower it to the IR. ``strict`` adds nothing:
    Snakemake's own parse is already the full check."""
    merged = {**dict(inputs or {}), **dict(config or {})}
    with paused_gc():
        return lower(build_dag(path, merged), workflow_name(Path(path)))


def check_module(path: str | os.PathLike, config: Mapping[str, Any] | None = None) -> int:
    """Check a rule module (``*.smk``) on its own: every rule as declared goes through the
    same checks a compile makes (checkpoints, swf_* params, resources, pchain options); what
    its jobs are is the business of the Snakefile that uses it. Returns the rules checked."""
    rules = parse_rules(path, config)
    for rule in rules:
        check_rule(rule)
    return len(rules)


def workflow_name(path: Path) -> str:
    """A name that is the same in every clone: a module's file stem; a Snakefile's folder
    relative to its repository root (``analysis/ecal``; ``snakemake`` at the root itself);
    outside a repository the folder's own name. Never an absolute path or a checkout name."""
    if path.name != "Snakefile":
        return path.stem
    folder = path.resolve().parent
    for root in (folder, *folder.parents):
        if (root / ".git").exists():
            relative = folder.relative_to(root).as_posix()
            return "snakemake" if relative == "." else relative
    return folder.name or "snakemake"


def lower(dag: SnakeDag, name: str) -> ir.Workflow:
    return _Lowering(dag, name).workflow()


def _empty_reason(dag: SnakeDag) -> str:
    """Why a Snakefile gives no step: the message names what Snakemake saw."""
    if not dag.jobs:
        return "the Snakefile has no jobs: Snakemake's job graph is empty"
    targets = ", ".join(repr(t) for t in dag.targets) or "the first rule"
    return (f"nothing to run: the target {targets} needs no job with a command (its inputs "
            f"are empty or made by no rule); the plan would have no tasks")


def _refuse_cycles(workflow: ir.Workflow, dag: SnakeDag) -> None:
    """Snakemake's job graph is acyclic, but its rule graph need not be (a rule reading what
    another instance of itself, or a rule it feeds, writes for other wildcards). A plan is one
    task per rule, so such a loop cannot be a task graph."""
    try:
        cycle = nx.find_cycle(workflow.graph)
    except nx.NetworkXNoCycle:
        return
    names = [edge[0] for edge in cycle]
    first = dag.rules[names[0]]
    loop = " -> ".join([*names, names[0]])
    raise UnsupportedFeature(
        f"rules {loop} feed each other (a loop between rules, unrolled over wildcards); a plan "
        "has one task per rule, so it cannot hold the loop", where=first.where,
        hint="write the unrolled chain as separate rules, or run this workflow with plain "
             "snakemake")


class _Lowering:
    def __init__(self, dag: SnakeDag, name: str):
        self.dag = dag
        self.wf = ir.Workflow(name=name, source_path=dag.snakefile)
        self.jobs_of: dict[str, list[SnakeJob]] = defaultdict(list)
        for job in dag.jobs:
            self.jobs_of[job.rule].append(job)
        # a rule without a command is still a job when it has outputs (``touch()``, or files
        # it only declares): Snakemake runs it; only output-less aggregates (`all`) are not
        self.steps = [r for r in dag.rules.values()
                      if not r.norun or any(j.outputs for j in self.jobs_of[r.name])]
        self.step_names = {r.name for r in self.steps}
        # file → (rule, port) that writes it, and the job that does
        self.producer: dict[str, tuple[str, str]] = {}
        self.producer_job: dict[str, int] = {}
        for job in dag.jobs:
            if job.rule in self.step_names:
                native = (dag.rules[job.rule].shell or "").strip() in NATIVE
                for port, files in job.outputs.items():
                    for f in files:  # a pchain rule's output is a label for its outDS
                        self.producer[f] = (job.rule, "outDS" if native else port)
                        self.producer_job[f] = job.jobid
        self.external: dict[tuple[str, ...], str] = {}  # external file set → workflow input
        self.parent_sets: dict[int, set[int]] = {}

    # --- the whole workflow -------------------------------------------------------------
    def workflow(self) -> ir.Workflow:
        links: list[ir.Link] = []
        for rule in sorted(self.steps, key=lambda r: r.name):
            step, step_links = self.guarded_step(rule)
            self.wf.add_step(step)
            links += step_links
        for link in sorted(set(links), key=lambda lk: (lk.src_step, lk.dst_step, lk.dst_port,
                                                       lk.src_port)):
            self.wf.add_link(link)
        add_post_checkpoint_steps(self.wf, self.dag, self.dag.jobs, self.runnable)
        if not self.wf.graph.number_of_nodes():
            raise WorkflowError(_empty_reason(self.dag), where=self.dag.snakefile,
                                hint="check the target rule's expand()/glob_wildcards() finds "
                                     "the files (e.g. --config pointing at a sample folder), "
                                     "or name a rule with a shell/run/script")
        _refuse_cycles(self.wf, self.dag)
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
            if rule is None or target in self.step_names:
                continue
            for job in self.jobs_of[target]:
                for port, files in job.inputs.items():
                    sources = sorted({self.producer[f] for f in files if f in self.producer})
                    if sources:
                        self.wf.outputs[port] = ir.WorkflowOutput(
                            port, "File" if len(files) == 1 else "File[]",
                            tuple(ir.Source(r, p) for r, p in sources))

    # --- one rule -----------------------------------------------------------------------
    def guarded_step(self, rule: SnakeRule) -> tuple[ir.Step, list[ir.Link]]:
        """:meth:`step`, with any slip of this module on a Snakefile Snakemake accepted
        reported as one line naming the rule (the promise: no traceback for a valid
        Snakefile), instead of a traceback."""
        try:
            return self.step(rule)
        except SwfflowError:
            raise
        except Exception as exc:  # noqa: BLE001 (the catch-all is the point, see above)
            raise UnsupportedFeature(
                f"rule {rule.name!r} uses something swfflow cannot lower yet "
                f"({type(exc).__name__}: {exc})", where=rule.where,
                hint="run it with plain snakemake, and report this Snakefile to swfflow"
            ) from None

    def step(self, rule: SnakeRule) -> tuple[ir.Step, list[ir.Link]]:
        jobs = self.jobs_of[rule.name]
        native = NATIVE.get((rule.shell or "").strip())
        if native is not None:
            return self.native_step(rule, native, jobs)
        mode = edge_mode(rule)
        scattered = [p for p, named in rule.input_patterns.items() if named and rule.wildcard_names
                     and all(len(j.inputs.get(p, ())) == 1 for j in jobs)]
        inputs: dict[str, ir.Port] = {}
        bindings: dict[str, ir.Binding] = {}
        links: list[ir.Link] = []
        streaming: list[str] = []
        # ports of all jobs: an input function may give one job more positional items
        for port in dict.fromkeys(p for j in jobs for p in j.inputs):
            files = sorted({f for j in jobs for f in j.inputs.get(port, ())})
            first = next(j.inputs[port] for j in jobs if port in j.inputs)
            per_job = port in scattered
            single = per_job or len(first) == 1
            inputs[port] = ir.Port(port, ir.PortKind.FILE if single else ir.PortKind.FILES,
                                   "File" if single else "File[]")
            made_of = self.made_inputs(jobs, port)
            made = sorted(set(made_of.values()))
            if made:
                if len(made_of) < len(files):
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
            wf_input = self.workflow_input(port, files, per_job, first)
            bindings[port] = ir.Binding(port, (ir.Source(None, wf_input),))
            if per_job and mode is not ir.EdgeMode.COMPLETE:
                streaming.append(port)
        scatter = None
        if scattered:
            scatter = ir.Scatter(tuple(scattered), ir.ScatterMethod.DOTPRODUCT)
        elif rule.wildcard_names and jobs:
            scatter = self.wildcard_scatter(rule, jobs, inputs, bindings)
        for key, value in sorted(rule.params.items()):
            if key in CONTROL_PARAMS or not plain_value(value) or key in inputs:
                continue
            inputs[key] = ir.Port(key, ir.PortKind.PARAM, param_type(value), value, True)
            bindings[key] = ir.Binding(key, default=value, has_default=True)
        outputs = {port: ir.Port(port, ir.PortKind.FILE, "File" if len(files) == 1 else "File[]")
                   for port, files in jobs[0].outputs.items()}
        step = ir.Step(
            name=rule.name, kind=ir.StepKind.COMMAND, inputs=inputs, outputs=outputs,
            bindings=bindings, scatter=scatter, resources=step_resources(rule),
            sizing=step_sizing(rule), container=step_container(rule.container),
            retries=rule.retries, command=display_command(rule.shell), streaming_inputs=tuple(sorted(streaming)),
            where=rule.where)
        split = (scattered[0], rule.input_items[scattered[0]][0]) if scattered else None
        self.runnable(step, rule, split)
        return step, links

    def runnable(self, step: ir.Step, rule: SnakeRule,
                 split: tuple[str, str] | None = None) -> None:
        """Give ``step`` the process its jobs run (Snakemake running the named job)."""
        add_snakefile_input(step, self.dag.snakefile)
        outputs = {port: list(rule.output_items.get(port, ())) for port in step.outputs}
        step.tool = rule_tool(step, rule.name, outputs, set(rule.directories), self.dag.config,
                              split=split, temp_outputs=set(rule.temp_outputs))

    def made_inputs(self, jobs: list[SnakeJob], port: str) -> dict[str, tuple[str, str]]:
        """The files of ``port`` that a job's parent writes → (rule, port) writing them. A
        file another rule *could* make but Snakemake takes as it is (``before_update``, an
        ``ancient`` input, an ``update`` chain) is not made: following the producer map
        would draw a rule-level cycle the job graph does not have."""
        made: dict[str, tuple[str, str]] = {}
        for job in jobs:
            parents = self.parents_of(job)
            for f in job.inputs.get(port, ()):
                if self.producer_job.get(f) in parents:
                    made[f] = self.producer[f]
        return made

    def parents_of(self, job: SnakeJob) -> set[int]:
        """Cached: a gather job has as many parents as ports may have files."""
        if job.jobid not in self.parent_sets:
            self.parent_sets[job.jobid] = set(job.parents)
        return self.parent_sets[job.jobid]

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
        if per_job or len(first) != 1:  # an empty list (an expand over nothing) too
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
        options = native_options(rule, kind)
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
