"""The intermediate representation: a workflow is a networkx DiGraph of typed steps.

Front ends (CWL, Snakemake, templates) produce it; the planner and the local driver read it.
Nothing else builds one. The IR is pure data: no I/O, no clock.

Shape
-----
- ``Workflow.graph`` is a ``networkx.DiGraph``. Each node is a step name; the node attribute
  ``step`` holds the :class:`Step`. Each edge ``(src, dst)`` has the attribute ``links``: the list
  of :class:`Link` s (port to port, with a :class:`EdgeMode`) between the two steps.
- A step that runs a sub-workflow keeps it (``Step.subworkflow``), so CWL semantics (scatter of
  a whole sub-workflow, ``when`` on it) survive. :func:`iter_leaves` flattens the hierarchy into
  leaf steps with qualified names (``validate/checksum``) and their enclosing scatters; the
  planner uses that to make one PanDA task per leaf.
- Values that are known at compile time are stored resolved; anything that depends on run-time
  outputs stays an expression string and is marked dynamic (the driver evaluates it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import networkx as nx


class EdgeMode(str, Enum):
    """How a consumer reads its producer's output."""

    STREAM = "stream"  # consume files as the producer makes them (JEDI noWaitParent)
    COMPLETE = "complete"  # wait until the producer is done / its dataset closed (merges, fits)


class PortKind(str, Enum):
    """What travels through a port; decides how the planner maps it to PanDA/Rucio."""

    FILE = "file"  # one file
    FILES = "files"  # a list of files (one Rucio dataset)
    DATASET = "dataset"  # a Rucio dataset by name (stream inputs, pchain opt_inDS)
    PARAM = "param"  # a value: string, number, boolean, record, array of values


class StepKind(str, Enum):
    COMMAND = "command"  # CWL CommandLineTool / Snakemake shell rule
    EXPRESSION = "expression"  # CWL ExpressionTool: runs in the driver, no PanDA task
    WORKFLOW = "workflow"  # a nested sub-workflow (Step.subworkflow)
    PRUN = "prun"  # PanDA-native steps of the pchain dialect
    PHPO = "phpo"
    JUNCTION = "junction"


class ScatterMethod(str, Enum):
    DOTPRODUCT = "dotproduct"
    FLAT_CROSSPRODUCT = "flat_crossproduct"
    NESTED_CROSSPRODUCT = "nested_crossproduct"


@dataclass(frozen=True)
class Port:
    """An input or output of a step or workflow.

    ``type`` is the CWL type in its short string form (``File``, ``File[]``, ``int?``,
    ``string``; records/enums as ``record``/``enum``) so front ends other than CWL can fill it.
    """

    name: str
    kind: PortKind
    type: str = "Any"
    default: Any = None
    has_default: bool = False
    doc: str = ""
    secondary_files: tuple[str, ...] = ()
    load_contents: bool = False  # CWL loadContents: a File value carries its first 64 KiB


@dataclass(frozen=True)
class Source:
    """Where a step input (or workflow output) gets a value: a workflow input (``step`` None)
    or an output port of another step of the same workflow level."""

    step: str | None
    port: str

    def __str__(self) -> str:
        return f"{self.step}/{self.port}" if self.step else self.port


@dataclass(frozen=True)
class Binding:
    """How one step input is fed (CWL ``WorkflowStepInput`` semantics)."""

    port: str
    sources: tuple[Source, ...] = ()
    link_merge: str | None = None  # merge_nested | merge_flattened
    pick_value: str | None = None  # first_non_null | the_only_non_null | all_non_null
    value_from: str | None = None  # expression, evaluated per job (dynamic unless constant)
    default: Any = None
    has_default: bool = False
    load_contents: bool = False


@dataclass(frozen=True)
class Resources:
    """Per-job needs. ``None`` means "not said": the profile default applies."""

    cores: int | None = None
    mem_mb: int | None = None
    disk_mb: int | None = None
    walltime_s: int | None = None


@dataclass(frozen=True)
class Sizing:
    """How a task over a dataset is cut into jobs (JEDI splitting)."""

    files_per_job: int | None = None
    max_files_per_job: int | None = None
    gb_per_job: float | None = None
    events_per_job: int | None = None  # for steps without input (simulation)
    n_jobs: int | None = None


@dataclass(frozen=True)
class Scatter:
    ports: tuple[str, ...]
    method: ScatterMethod = ScatterMethod.DOTPRODUCT


@dataclass(frozen=True)
class Condition:
    """A ``when``. ``static`` is True/False when decided at compile time, None if dynamic."""

    expression: str
    static: bool | None = None
    depends_on: tuple[str, ...] = ()  # input ports the expression reads


@dataclass(frozen=True)
class Container:
    image: str
    required: bool  # CWL requirement (must run in it) vs hint (may run without)


@dataclass
class Step:
    name: str
    kind: StepKind
    inputs: dict[str, Port] = field(default_factory=dict)
    outputs: dict[str, Port] = field(default_factory=dict)
    bindings: dict[str, Binding] = field(default_factory=dict)
    scatter: Scatter | None = None
    when: Condition | None = None
    resources: Resources = field(default_factory=Resources)
    sizing: Sizing = field(default_factory=Sizing)
    container: Container | None = None
    retries: int | None = None
    # argv template for display/PanDA: tokens with placeholders like {in:raw} {out:hist} {param:n}
    command: tuple[str, ...] = ()
    # the CWL process as a plain dict (what cwltool runs locally); None for non-CWL steps
    tool: dict[str, Any] | None = None
    tool_uri: str | None = None
    subworkflow: Workflow | None = None
    native: dict[str, Any] = field(default_factory=dict)  # pchain opt_* fields, verbatim
    # ports of this step whose input is a stream (consumed while the dataset is open)
    streaming_inputs: tuple[str, ...] = ()
    requirements: tuple[dict[str, Any], ...] = ()  # inherited + own, for the local runner
    hints: tuple[dict[str, Any], ...] = ()
    where: str = ""  # file:line of the step's definition, for error messages
    doc: str = ""


@dataclass(frozen=True)
class Link:
    """A data link between two steps of one workflow level."""

    src_step: str
    src_port: str
    dst_step: str
    dst_port: str
    mode: EdgeMode = EdgeMode.COMPLETE


@dataclass(frozen=True)
class WorkflowInput:
    port: Port
    stream: bool = False  # the run's raw STF dataset, open while the DAQ runs


@dataclass(frozen=True)
class WorkflowOutput:
    name: str
    type: str
    sources: tuple[Source, ...]
    link_merge: str | None = None
    pick_value: str | None = None


@dataclass
class Workflow:
    name: str
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    inputs: dict[str, WorkflowInput] = field(default_factory=dict)
    outputs: dict[str, WorkflowOutput] = field(default_factory=dict)
    requirements: tuple[dict[str, Any], ...] = ()
    hints: tuple[dict[str, Any], ...] = ()
    source_path: str = ""
    doc: str = ""

    # --- building -------------------------------------------------------------------------
    def add_step(self, step: Step) -> None:
        if step.name in self.graph:
            raise ValueError(f"duplicate step name {step.name!r}")
        self.graph.add_node(step.name, step=step)

    def add_link(self, link: Link) -> None:
        if self.graph.has_edge(link.src_step, link.dst_step):
            self.graph.edges[link.src_step, link.dst_step]["links"].append(link)
        else:
            self.graph.add_edge(link.src_step, link.dst_step, links=[link])

    # --- reading --------------------------------------------------------------------------
    def step(self, name: str) -> Step:
        return self.graph.nodes[name]["step"]

    @property
    def steps(self) -> list[Step]:
        """Steps in a deterministic topological order (ties broken by name)."""
        return [self.step(n) for n in nx.lexicographical_topological_sort(self.graph)]

    def links(self) -> list[Link]:
        return [lk for _, _, data in sorted(self.graph.edges(data=True)) for lk in data["links"]]

    def links_into(self, step_name: str) -> list[Link]:
        return [lk for p in sorted(self.graph.predecessors(step_name))
                for lk in self.graph.edges[p, step_name]["links"]]

    def stream_inputs(self) -> list[str]:
        return sorted(n for n, wi in self.inputs.items() if wi.stream)


@dataclass(frozen=True)
class Leaf:
    """A leaf step seen from the top: its qualified name and the scatters around it."""

    path: str  # "validate/checksum"
    step: Step
    enclosing_scatter: tuple[Scatter, ...]  # outermost first, from enclosing sub-workflow steps
    enclosing_when: tuple[Condition, ...]


def iter_leaves(workflow: Workflow, prefix: str = "",
                scatters: tuple[Scatter, ...] = (),
                whens: tuple[Condition, ...] = ()) -> Iterator[Leaf]:
    """Yield every non-workflow step, depth first in topological order."""
    for step in workflow.steps:
        path = f"{prefix}{step.name}"
        if step.subworkflow is not None:
            yield from iter_leaves(
                step.subworkflow, f"{path}/",
                scatters + ((step.scatter,) if step.scatter else ()),
                whens + ((step.when,) if step.when else ()),
            )
        else:
            yield Leaf(path, step, scatters, whens)


def qualified_graph(workflow: Workflow) -> nx.DiGraph:
    """The flattened leaf graph: nodes are leaf paths (attribute ``leaf``); an edge means a
    leaf consumes data of another, with attribute ``mode`` (stream wins over complete only if
    every link between the two is stream). Links through sub-workflow boundaries are resolved
    to the leaves that produce and consume the data."""
    flat = nx.DiGraph()
    for leaf in iter_leaves(workflow):
        flat.add_node(leaf.path, leaf=leaf)
    _add_flat_edges(workflow, "", flat)
    return flat


def _producers(workflow: Workflow, prefix: str, step_name: str, port: str) -> list[str]:
    """Leaf paths that produce ``step_name/port`` (descending into sub-workflows)."""
    step = workflow.step(step_name)
    if step.subworkflow is None:
        return [f"{prefix}{step_name}"]
    out = step.subworkflow.outputs.get(port)
    if out is None:
        return []
    found: list[str] = []
    for src in out.sources:
        if src.step is not None:
            found += _producers(step.subworkflow, f"{prefix}{step_name}/", src.step, src.port)
    return found


def _consumers(workflow: Workflow, prefix: str, step_name: str, port: str) -> list[str]:
    """Leaf paths that read input ``port`` of ``step_name`` (descending into sub-workflows)."""
    step = workflow.step(step_name)
    if step.subworkflow is None:
        return [f"{prefix}{step_name}"]
    sub = step.subworkflow
    found: list[str] = []
    for inner in sub.steps:
        for binding in inner.bindings.values():
            if any(s.step is None and s.port == port for s in binding.sources):
                found += _consumers(sub, f"{prefix}{step_name}/", inner.name, binding.port)
    return found


def _add_flat_edges(workflow: Workflow, prefix: str, flat: nx.DiGraph) -> None:
    for link in workflow.links():
        for src in _producers(workflow, prefix, link.src_step, link.src_port):
            for dst in _consumers(workflow, prefix, link.dst_step, link.dst_port):
                if flat.has_edge(src, dst):
                    if link.mode is EdgeMode.COMPLETE:
                        flat.edges[src, dst]["mode"] = EdgeMode.COMPLETE
                else:
                    flat.add_edge(src, dst, mode=link.mode)
    for step in workflow.steps:
        if step.subworkflow is not None:
            _add_flat_edges(step.subworkflow, f"{prefix}{step.name}/", flat)
