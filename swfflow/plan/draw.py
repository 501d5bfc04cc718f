"""Pictures of a workflow's step graph: Mermaid and Graphviz dot text (pure functions).

Leaves of a sub-workflow are grouped in a box named after it; stream edges are drawn solid
and labelled "stream", complete edges dashed and labelled "complete"; a stream input is a
stadium-shaped node feeding the steps that read it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import networkx as nx

from swfflow.ir import EdgeMode, Workflow, qualified_graph
from swfflow.plan.sources import resolve_origins


def _node_id(name: str) -> str:
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _groups(graph: nx.DiGraph) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for node in sorted(graph.nodes):
        groups[node.rpartition("/")[0]].append(node)
    return groups


def _label(graph: nx.DiGraph, node: str) -> str:
    step = graph.nodes[node]["leaf"].step
    marks = []
    if step.scatter:
        marks.append("scatter")
    if step.when is not None:
        marks.append("when" if step.when.static is None else f"when={step.when.static}")
    name = node.rpartition("/")[2]
    return f"{name} ({', '.join(marks)})" if marks else name


def _stream_edges(workflow: Workflow) -> list[tuple[str, str]]:
    streams = set(workflow.stream_inputs())
    return sorted({(origin.name, leaf) for (leaf, _), origins in resolve_origins(workflow).items()
                   for origin in origins if origin.kind == "input" and origin.name in streams})


@dataclass(frozen=True)
class _Syntax:
    """How one picture language writes each element (``str.format`` templates)."""

    header: tuple[str, ...]  # lines before the nodes, inside the graph
    stream_input: str  # {id} {name}
    group_open: str  # {id} {name}
    group_close: str
    node: str  # {id} {label}
    input_edge: str  # {src} {dst}
    edges: dict[EdgeMode, str]  # {src} {dst}


_MERMAID = _Syntax(
    header=(),
    stream_input='{id}(["{name} (stream)"])',
    group_open='subgraph {id}["{name}"]', group_close="end",
    node='{id}["{label}"]',
    input_edge="{src} -->|stream| {dst}",
    edges={EdgeMode.STREAM: "{src} -->|stream| {dst}",
           EdgeMode.COMPLETE: "{src} -.->|complete| {dst}"})

_DOT = _Syntax(
    header=("rankdir=TB;",
            'node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
            'edge [fontname="Helvetica", fontsize=10];'),
    stream_input='{id} [label="{name}\\n(stream)", shape=cylinder, fillcolor="#fdf1d6"];',
    group_open='subgraph cluster_{id} {{ label="{name}"; style=dashed;', group_close="}}",
    node='{id} [label="{label}"];',
    input_edge='{src} -> {dst} [label="stream"];',
    edges={EdgeMode.STREAM: '{src} -> {dst} [label="stream", style=solid];',
           EdgeMode.COMPLETE: '{src} -> {dst} [label="complete", style=dashed];'})


def _render(workflow: Workflow, syntax: _Syntax) -> list[str]:
    graph = qualified_graph(workflow)
    lines = [f"  {line}" for line in syntax.header]
    for name in workflow.stream_inputs():
        lines.append("  " + syntax.stream_input.format(id=_node_id("in:" + name), name=name))
    for group, nodes in sorted(_groups(graph).items()):
        indent = "    " if group else "  "
        if group:
            lines.append("  " + syntax.group_open.format(id=_node_id("sub:" + group), name=group))
        lines += [indent + syntax.node.format(id=_node_id(n), label=_label(graph, n))
                  for n in nodes]
        if group:
            lines.append("  " + syntax.group_close.format())
    for src, dst in _stream_edges(workflow):
        lines.append("  " + syntax.input_edge.format(src=_node_id("in:" + src), dst=_node_id(dst)))
    for src, dst, data in sorted(graph.edges(data=True)):
        lines.append("  " + syntax.edges[data["mode"]].format(src=_node_id(src),
                                                               dst=_node_id(dst)))
    return lines


def to_mermaid(workflow: Workflow) -> str:
    return "\n".join(["flowchart TD", *_render(workflow, _MERMAID)]) + "\n"


def to_dot(workflow: Workflow) -> str:
    return "\n".join([f'digraph "{workflow.name}" {{', *_render(workflow, _DOT), "}"]) + "\n"
