"""Checkpoints: the part of a Snakefile's job graph that is known only once a checkpoint ran.

Mapped onto what the plan already has for run-time widths (docs/design.md, "scatter width …
resolved at run time"), not onto a second mechanism:

- an **expansion step** (``snakemake_checkpoints``) runs after every checkpoint's task: Snakemake
  re-evaluates the job graph in the working directory with the checkpoints' outputs there and
  lists, per rule, the wildcards of its jobs (one output port per rule: a list of JSON objects);
- each rule that has no job before the checkpoints ran (a **post-checkpoint rule**) is a step
  scattered over that list: a run-time scatter, one job per Snakemake job (none when Snakemake
  needs none of it);
- the order among post-checkpoint rules comes from their patterns (a rule whose output pattern
  can make another's input pattern runs first); a rule whose job read a checkpoint's output
  when the plan was compiled (an input function calling ``checkpoints.X.get()``) waits for
  every post-checkpoint rule.

A checkpoint that itself runs only after a checkpoint cannot be planned (its expansion would
need a second round): one clear error naming it. Pure: builds IR, nothing runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from swfflow import ir
from swfflow.errors import UnsupportedFeature
from swfflow.frontends.snakemake_dag import SnakeDag, SnakeJob, SnakeRule
from swfflow.frontends.snakemake_rules import (display_command, step_container, step_resources,
                                               step_sizing)
from swfflow.frontends.snakemake_tools import (AFTER_PREFIX, JOBS_PORT, add_snakefile_input,
                                               expansion_tool)

EXPANSION_STEP = "snakemake_checkpoints"
_WILDCARD = re.compile(r"\{\s*(\w+)\s*(?:,[^{}]*(?:\{[^{}]*\}[^{}]*)*)?\}")


def post_checkpoint_rules(dag: SnakeDag) -> list[SnakeRule]:
    """Rules with no job yet that may run once the checkpoints ran (not output-less
    aggregates); refused when one of them is a checkpoint itself."""
    if not any(rule.is_checkpoint for rule in dag.rules.values()):
        return []
    rules = [r for r in dag.idle_rules.values() if r.output_items]
    for rule in rules:
        if rule.is_checkpoint:
            raise UnsupportedFeature(
                f"checkpoint {rule.name!r} has jobs only after another checkpoint ran; swfflow "
                "plans one round of checkpoint expansion", where=rule.where,
                hint="make it a plain rule, or run this workflow with plain snakemake")
    return sorted(rules, key=lambda r: r.name)


def add_post_checkpoint_steps(wf: ir.Workflow, dag: SnakeDag, jobs: list[SnakeJob],
                              make_runnable: Callable[[ir.Step, SnakeRule], None]) -> None:
    """Add the expansion step and one run-time-scattered step per post-checkpoint rule to
    ``wf`` (whose steps are the rules with jobs); wire the steps that wait for them."""
    checkpoints = sorted(name for name, rule in dag.rules.items()
                         if rule.is_checkpoint and name in wf.graph)
    checkpoint_jobs = {j.jobid for j in jobs if j.rule in checkpoints}
    consumers = sorted({j.rule for j in jobs if j.rule in wf.graph and j.rule not in checkpoints
                        and checkpoint_jobs.intersection(j.parents)})
    for consumer in consumers:
        _orders_only(wf.step(consumer), set(checkpoints))
    dynamic = post_checkpoint_rules(dag)
    if not dynamic:
        return
    if EXPANSION_STEP in dag.rules:
        raise UnsupportedFeature(f"a rule is called {EXPANSION_STEP!r}, the name swfflow gives "
                                 "its checkpoint expansion step",
                                 where=dag.rules[EXPANSION_STEP].where, hint="rename the rule")
    wf.add_step(_expansion_step(wf, dag, checkpoints, [r.name for r in dynamic]))
    for name in checkpoints:
        wf.add_link(ir.Link(name, _first_output(wf.step(name)), EXPANSION_STEP,
                            AFTER_PREFIX + name, ir.EdgeMode.COMPLETE))
    for rule in dynamic:
        step = _dynamic_step(rule)
        make_runnable(step, rule)
        wf.add_step(step)
        wf.add_link(ir.Link(EXPANSION_STEP, rule.name, rule.name, JOBS_PORT,
                            ir.EdgeMode.COMPLETE))
    for rule in dynamic:
        for producer in dynamic:
            if producer is not rule and _may_feed(producer, rule):
                _wait_for(wf, producer.name, rule.name)
    for consumer in consumers:
        for rule in dynamic:
            _wait_for(wf, rule.name, consumer)


def _orders_only(step: ir.Step, checkpoints: set[str]) -> None:
    """A port fed by a checkpoint's output when the plan was compiled stands for what an
    input function returns once the checkpoint ran (Snakemake's placeholder): it orders the
    step after the checkpoint and carries no files of its own (the job finds its real inputs
    in the working directory)."""
    for port, binding in step.bindings.items():
        if any(source.step in checkpoints for source in binding.sources):
            step.inputs[port] = ir.Port(port, ir.PortKind.PARAM, "Any")
            if step.tool is not None:
                step.tool["inputs"][port] = {"type": "Any?"}


def _expansion_step(wf: ir.Workflow, dag: SnakeDag, checkpoints: list[str],
                    rules: list[str]) -> ir.Step:
    after = [AFTER_PREFIX + name for name in checkpoints]
    inputs = {port: ir.Port(port, ir.PortKind.PARAM, "Any") for port in after}
    bindings = {AFTER_PREFIX + name: ir.Binding(AFTER_PREFIX + name, (
        ir.Source(name, _first_output(wf.step(name))),)) for name in checkpoints}
    outputs = {rule: ir.Port(rule, ir.PortKind.PARAM, "string[]") for rule in rules}
    step = ir.Step(name=EXPANSION_STEP, kind=ir.StepKind.COMMAND, inputs=inputs,
                   outputs=outputs, bindings=bindings, where=dag.snakefile)
    add_snakefile_input(step, dag.snakefile)
    step.tool = expansion_tool(rules, dag.config, after)
    return step


def _dynamic_step(rule: SnakeRule) -> ir.Step:
    outputs = {port: ir.Port(port, ir.PortKind.FILE if len(items) == 1 else ir.PortKind.FILES,
                             "File" if len(items) == 1 else "File[]")
               for port, items in rule.output_items.items()}
    inputs = {JOBS_PORT: ir.Port(JOBS_PORT, ir.PortKind.PARAM, "string[]")}
    bindings = {JOBS_PORT: ir.Binding(JOBS_PORT, (ir.Source(EXPANSION_STEP, rule.name),))}
    return ir.Step(name=rule.name, kind=ir.StepKind.COMMAND, inputs=inputs, outputs=outputs,
                   bindings=bindings, scatter=ir.Scatter((JOBS_PORT,), ir.ScatterMethod.DOTPRODUCT),
                   resources=step_resources(rule), sizing=step_sizing(rule),
                   container=step_container(rule.container), retries=rule.retries,
                   command=display_command(rule.shell), where=rule.where)


def _wait_for(wf: ir.Workflow, producer: str, consumer: str) -> None:
    """An ordering input of ``consumer``: the files of ``producer``'s first output."""
    port = AFTER_PREFIX + producer
    step = wf.step(consumer)
    source_port = _first_output(wf.step(producer))
    if source_port is None or port in step.inputs:
        return
    step.inputs[port] = ir.Port(port, ir.PortKind.PARAM, "Any")
    step.bindings[port] = ir.Binding(port, (ir.Source(producer, source_port),))
    if step.tool is not None:
        step.tool["inputs"][port] = {"type": "Any?"}
    wf.add_link(ir.Link(producer, source_port, consumer, port, ir.EdgeMode.COMPLETE))


def _first_output(step: ir.Step) -> str | None:
    return next(iter(sorted(step.outputs)), None)


def _may_feed(producer: SnakeRule, consumer: SnakeRule) -> bool:
    """Can one of ``producer``'s output patterns make one of ``consumer``'s input patterns?
    (The consumer's wildcards are filled with a sample value; input functions are unknown.)"""
    from snakemake.io import regex_from_filepattern
    wanted = [_WILDCARD.sub("0", item) for items in consumer.input_items.values()
              for item in items]
    made = [re.compile(regex_from_filepattern(item)) for items in producer.output_items.values()
            for item in items]
    return any(regex.fullmatch(path) for regex in made for path in wanted)
