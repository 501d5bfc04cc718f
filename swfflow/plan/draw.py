"""Pictures of a workflow's step graph: Mermaid and Graphviz dot text (pure functions).

Leaves of a sub-workflow are grouped in a box named after it; stream edges are drawn solid
and labelled "stream", complete edges dashed and labelled "complete"; a stream input is a
stadium-shaped node feeding the steps that read it.
"""

from __future__ import annotations

import re
from collections import defaultdict

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


def to_mermaid(workflow: Workflow) -> str:
    graph = qualified_graph(workflow)
    lines = ["flowchart TD"]
    for name in workflow.stream_inputs():
        lines.append(f'  {_node_id("in:" + name)}(["{name} (stream)"])')
    for group, nodes in sorted(_groups(graph).items()):
        indent = "  "
        if group:
            lines.append(f'  subgraph {_node_id("sub:" + group)}["{group}"]')
            indent = "    "
        lines += [f'{indent}{_node_id(n)}["{_label(graph, n)}"]' for n in nodes]
        if group:
            lines.append("  end")
    for src, dst in _stream_edges(workflow):
        lines.append(f"  {_node_id('in:' + src)} -->|stream| {_node_id(dst)}")
    for src, dst, data in sorted(graph.edges(data=True)):
        arrow = "-->" if data["mode"] is EdgeMode.STREAM else "-.->"
        lines.append(f"  {_node_id(src)} {arrow}|{data['mode'].value}| {_node_id(dst)}")
    return "\n".join(lines) + "\n"


def to_dot(workflow: Workflow) -> str:
    graph = qualified_graph(workflow)
    lines = [f'digraph "{workflow.name}" {{', "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for name in workflow.stream_inputs():
        lines.append(f'  {_node_id("in:" + name)} [label="{name}\\n(stream)", shape=cylinder, '
                     'fillcolor="#fdf1d6"];')
    for group, nodes in sorted(_groups(graph).items()):
        indent = "  "
        if group:
            lines.append(f'  subgraph cluster_{_node_id(group)} {{ label="{group}"; style=dashed;')
            indent = "    "
        lines += [f'{indent}{_node_id(n)} [label="{_label(graph, n)}"];' for n in nodes]
        if group:
            lines.append("  }")
    for src, dst in _stream_edges(workflow):
        lines.append(f'  {_node_id("in:" + src)} -> {_node_id(dst)} [label="stream"];')
    for src, dst, data in sorted(graph.edges(data=True)):
        style = "solid" if data["mode"] is EdgeMode.STREAM else "dashed"
        lines.append(f'  {_node_id(src)} -> {_node_id(dst)} '
                     f'[label="{data["mode"].value}", style={style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"
