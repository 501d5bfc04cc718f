"""Compose templates into a workflow from a short YAML description written by a detector expert.

A spec names the workflow inputs (the run's STF stream, closed datasets, single files), and the
steps: a template, its parameters, and what feeds each input (a workflow input or
``step/output``). The composer checks everything, then writes a CWL workflow (``<name>.cwl`` +
``tools/<step>.cwl``) and a Snakefile (``Snakefile`` + ``rules/<step>.smk``) describing the same
graph. A template input of type ``File`` fed a list of files runs once per file (CWL scatter,
Snakemake ``{stf}`` wildcard; PanDA splits the dataset into jobs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import networkx as nx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swfflow.errors import ConfigError
from swfflow.templating.meta import Meta
from swfflow.templating.render import PAYLOAD, Library, Rendered, RuleIO, render

CWL_NAMESPACE = "https://github.com/swfflow/swfflow/cwl#"
IDENTIFIER = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class InputSpec(_Strict):
    type: Literal["File", "File[]"] = "File[]"
    stream: bool = False  # the run's raw STF dataset, open while the DAQ runs
    suffix: str = ".stf"  # file names end with this (Snakemake finds the files by it)
    default: str | None = None  # Snakemake: the path (folder for lists) when --config omits it
    doc: str = ""


class Feed(_Strict):
    source: str = Field(alias="from")
    mode: Literal["stream", "complete"] | None = None  # default: the template input's mode


class StepSpec(_Strict):
    template: str
    params: dict[str, Any] = {}
    feeds: dict[str, str | Feed] = Field({}, alias="in")
    resources: dict[Literal["cores", "mem_mb", "disk_mb", "runtime_min"], int] = {}
    doc: str = ""


class Spec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    doc: str = ""
    inputs: dict[str, InputSpec] = {}
    steps: dict[str, StepSpec]
    outputs: dict[str, str] = {}
    step_lines: dict[str, int] = Field({}, exclude=True)  # filled by load_spec, for messages


@dataclass(frozen=True)
class Edge:
    port: str  # consumer input
    source: str  # workflow input name or "step/output"
    mode: str
    is_list: bool  # the source is a list of files
    origin: str | None  # for lists: the workflow input whose files they follow


@dataclass
class ComposedStep:
    name: str
    spec: StepSpec
    meta: Meta
    edges: dict[str, Edge] = field(default_factory=dict)
    scatter: str | None = None  # the input that runs once per file
    origin: str | None = None  # the workflow input whose files the scatter follows
    rendered: Rendered | None = None


@dataclass
class Composition:
    spec: Spec
    steps: dict[str, ComposedStep]  # in topological order
    cwl: dict[str, Any]
    snakefile: str


def load_spec(path: Path) -> Spec:
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the workflow spec: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("the spec must be a YAML mapping with name, steps (and inputs, "
                          "outputs)", where=str(path),
                          hint="see examples/templated/spec.yaml") from None
    try:
        return Spec.model_validate({**data, "step_lines": _step_lines(text)})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"spec field {loc or '(top)'}: {first['msg']}", where=str(path),
                          hint="see docs/templates/README.md for the spec format") from None


def _step_lines(text: str) -> dict[str, int]:
    """Line number of each step's key, so errors can say ``spec.yaml:12: step reco``."""
    root = yaml.compose(text)
    for key, value in getattr(root, "value", []):
        if key.value == "steps" and isinstance(value, yaml.MappingNode):
            return {k.value: k.start_mark.line + 1 for k, _ in value.value}
    return {}


def _step_where(spec: Spec, where: str, name: str) -> str:
    line = spec.step_lines.get(name)
    return f"{where}:{line}: step {name}" if line else f"{where}: step {name}"


def compose(spec: Spec, library: Library, where: str = "spec") -> Composition:
    order = _order(spec, where)
    steps: dict[str, ComposedStep] = {}
    for name in order:
        step = _resolve(spec, name, steps, library, where)
        step.rendered = render(library, step.spec.template, step.spec.params, step=name,
                               rule_io=_rule_io(spec, step, steps),
                               resources=dict(step.spec.resources),
                               where=_step_where(spec, where, name))
        steps[name] = step
    _check_outputs(spec, steps, where)
    return Composition(spec, steps, _cwl_workflow(spec, steps), _snakefile(spec, steps))


def write(composition: Composition, library: Library, outdir: Path) -> list[Path]:
    """Write <name>.cwl, tools/, Snakefile, rules/ (with the payload) under ``outdir``."""
    written = []

    def put(relative: str, text: str) -> None:
        target = outdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)

    header = (f"# {composition.spec.name}: composed by `swfflow template compose`; do not "
              f"edit, change the spec and compose again.\n")
    put(f"{composition.spec.name}.cwl",
        "#!/usr/bin/env cwl-runner\n" + header + dump_yaml(composition.cwl))
    put("Snakefile", composition.snakefile)
    for name, step in composition.steps.items():
        put(f"tools/{name}.cwl", step.rendered.cwl)
        put(f"rules/{name}.smk", step.rendered.smk)
    put(f"rules/{PAYLOAD}", library.shared_file(PAYLOAD).read_text())  # workflow.source_path
    return written


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks, so docs stay readable in the written CWL."""


_BlockDumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def dump_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, width=100)


# --- checking -------------------------------------------------------------------------------
def _feeds(step: StepSpec) -> dict[str, Feed]:
    return {port: Feed(source=f) if isinstance(f, str) else f for port, f in step.feeds.items()}


def _order(spec: Spec, where: str) -> list[str]:
    graph = nx.DiGraph()
    for name, step in spec.steps.items():
        if not _is_identifier(name):
            raise ConfigError(f"step name {name!r} must be lower case letters, digits and _",
                              where=where, hint="it becomes a CWL step id and a rule name")
        graph.add_node(name)
        for feed in _feeds(step).values():
            upstream = feed.source.split("/")[0]
            if "/" in feed.source and upstream in spec.steps:
                graph.add_edge(upstream, name)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return list(nx.lexicographical_topological_sort(graph, key=list(spec.steps).index))
    raise ConfigError(f"the steps form a cycle: {' → '.join(a for a, _ in cycle)} → "
                      f"{cycle[0][0]}", where=where)


def _is_identifier(name: str) -> bool:
    return re.match(IDENTIFIER, name) is not None


def _resolve(spec: Spec, name: str, done: dict[str, ComposedStep], library: Library,
             where: str) -> ComposedStep:
    step_spec = spec.steps[name]
    here = _step_where(spec, where, name)
    try:
        meta = library.meta(step_spec.template)
    except ConfigError as exc:
        raise ConfigError(exc.what, where=here, hint=exc.hint) from None
    step = ComposedStep(name, step_spec, meta)
    feeds = _feeds(step_spec)
    for port in feeds:
        if port not in meta.inputs:
            raise ConfigError(
                f"template {meta.name} has no input {port!r} "
                f"(inputs: {', '.join(meta.inputs) or 'none'})", where=here)
    for port, spec_port in meta.inputs.items():
        if port not in feeds:
            if spec_port.optional:
                continue
            raise ConfigError(f"input {port} of template {meta.name} is not fed ({spec_port.doc})",
                              where=here, hint=f"add `in: {{{port}: <input or step/output>}}`")
        feed = feeds[port]
        is_list, origin = _source_shape(spec, done, feed.source, here)
        mode = feed.mode or spec_port.mode
        if spec_port.type == "File" and is_list:
            if port != meta.per_file_input:
                raise ConfigError(f"input {port} of template {meta.name} takes one file, but "
                                  f"{feed.source} is a list of files", where=here)
            step.scatter, step.origin = port, origin
        elif spec_port.type == "File[]" and not is_list:
            raise ConfigError(f"input {port} of template {meta.name} takes a list of files, but "
                              f"{feed.source} is one file", where=here)
        step.edges[port] = Edge(port, feed.source, mode, is_list, origin)
    return step


def _source_shape(spec: Spec, done: dict[str, ComposedStep], source: str,
                  here: str) -> tuple[bool, str | None]:
    """(is a list of files, the workflow input the list follows) for a feed."""
    if source in spec.inputs:
        is_list = spec.inputs[source].type == "File[]"
        return is_list, source if is_list else None
    upstream, _, port = source.partition("/")
    if upstream not in done:
        known = ", ".join([*spec.inputs, *(f"{s}/<output>" for s in done)]) or "none yet"
        raise ConfigError(f"unknown source {source!r}", where=here,
                          hint=f"use a workflow input or an earlier step's output: {known}")
    producer = done[upstream]
    if port not in producer.meta.outputs:
        raise ConfigError(f"step {upstream} (template {producer.meta.name}) has no output "
                          f"{port!r} (outputs: {', '.join(producer.meta.outputs)})", where=here)
    return producer.scatter is not None, producer.origin


def _check_outputs(spec: Spec, steps: dict[str, ComposedStep], where: str) -> None:
    for name, source in spec.outputs.items():
        upstream, _, port = source.partition("/")
        if upstream not in steps or port not in steps[upstream].meta.outputs:
            raise ConfigError(f"workflow output {name}: {source!r} is not a step output",
                              where=where, hint="write it as <step>/<output>")


# --- CWL ------------------------------------------------------------------------------------
def _cwl_workflow(spec: Spec, steps: dict[str, ComposedStep]) -> dict[str, Any]:
    inputs = {}
    for name, wi in spec.inputs.items():
        entry: dict[str, Any] = {"type": wi.type}
        if wi.stream:
            entry["swf:stream"] = True
        if wi.doc:
            entry["doc"] = wi.doc
        inputs[name] = entry
    cwl_steps = {}
    for name, step in steps.items():
        entry = {"run": f"tools/{name}.cwl"}
        if step.spec.doc:
            entry["doc"] = step.spec.doc
        if step.scatter:
            entry["scatter"] = step.scatter
        entry["in"] = {port: {"source": e.source, "swf:mode": e.mode}
                       for port, e in step.edges.items()}
        entry["out"] = list(step.meta.outputs)
        cwl_steps[name] = entry
    outputs = {}
    for name, source in spec.outputs.items():
        producer = steps[source.split("/")[0]]
        outputs[name] = {"type": "File[]" if producer.scatter else "File",
                         "outputSource": source}
    document: dict[str, Any] = {
        "cwlVersion": "v1.2", "class": "Workflow",
        "$namespaces": {"swf": CWL_NAMESPACE},
        "label": spec.name,
    }
    if spec.doc:
        document["doc"] = spec.doc
    if any(s.scatter for s in steps.values()):
        document["requirements"] = [{"class": "ScatterFeatureRequirement"}]
    document.update(inputs=inputs, outputs=outputs, steps=cwl_steps)
    return document


# --- Snakemake ------------------------------------------------------------------------------
def _var(name: str, kind: str) -> str:
    return f"{name.upper()}_{kind}"


def _path_of(spec: Spec, steps: dict[str, ComposedStep], source: str) -> str:
    """Python expression of one file of ``source`` (with ``{stf}`` for per-file data)."""
    if source in spec.inputs:
        wi = spec.inputs[source]
        if wi.type == "File":
            return _var(source, "PATH")
        return f'os.path.join({_var(source, "DIR")}, "{{stf}}{wi.suffix}")'
    upstream, _, port = source.partition("/")
    producer = steps[upstream]
    suffix = producer.meta.outputs[port].suffix
    stem = "{stf}" if producer.scatter else upstream
    return f'"results/{upstream}/{stem}{suffix}"'


def _rule_io(spec: Spec, step: ComposedStep, steps: dict[str, ComposedStep]) -> RuleIO:
    inputs = {}
    for port, edge in step.edges.items():
        path = _path_of(spec, steps, edge.source)
        consumer_takes_list = step.meta.inputs[port].type == "File[]"
        inputs[port] = (f'expand({path}, stf={_var(edge.origin, "ITEMS")})'
                        if consumer_takes_list else path)
    stem = "{stf}" if step.scatter else step.name
    outputs = {port: f'"results/{step.name}/{stem}{p.suffix}"'
               for port, p in step.meta.outputs.items()}
    log = f'"logs/{step.name}/{{stf}}.log"' if step.scatter else f'"logs/{step.name}.log"'
    return RuleIO(inputs, outputs, log, {port: e.mode for port, e in step.edges.items()})


def _snakefile(spec: Spec, steps: dict[str, ComposedStep]) -> str:
    lines = [f"# {spec.name}: composed by `swfflow template compose`; do not edit, change the "
             f"spec and compose again.",
             *(f"# {line}" for line in spec.doc.splitlines()),
             "# Inputs are set with --config NAME=PATH (a folder for lists of files).", "",
             'wildcard_constraints:', '    stf=r"[^/]+",', ""]
    for name, wi in spec.inputs.items():
        if wi.type == "File":
            default = wi.default or f"data/{name}{wi.suffix}"
            lines.append(f'{_var(name, "PATH")} = config.get("{name}", "{default}")')
        else:
            default = wi.default or f"data/{name}"
            lines.append(f'{_var(name, "DIR")} = config.get("{name}", "{default}")')
            lines.append(f'{_var(name, "ITEMS")} = glob_wildcards(os.path.join('
                         f'{_var(name, "DIR")}, "{{stf}}{wi.suffix}")).stf')
    lines += ["", "", "rule all:", "    default_target: True", "    input:"]
    for name, source in spec.outputs.items():
        producer = steps[source.split("/")[0]]
        path = _path_of(spec, steps, source)
        if producer.scatter:
            path = f'expand({path}, stf={_var(producer.origin, "ITEMS")})'
        lines.append(f"        {name}={path},")
    lines.append("")
    lines += [f'include: "rules/{name}.smk"' for name in steps]
    return "\n".join(lines) + "\n"

