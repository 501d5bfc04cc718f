"""A plan's task graph as SVG for the monitor, drawn with `swfflow dag`'s conventions (stream
edges solid, complete edges dashed, layered top to bottom) but from the *plan's* tasks, so run-time
instances and per-element scatter tasks appear as they run; each task is one ``<g>`` whose
``data-key`` the page finds to recolour it and update its job count without reloading.

Laid out here (layers = topological generations) rather than by Graphviz: the monitor then needs
no ``dot`` program, and positions are stable as states change.
"""

from __future__ import annotations

from html import escape

import networkx as nx

from swfflow.monitor.model import Task

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 168, 40, 24, 36, 12


def task_graph(tasks: list[Task]) -> nx.DiGraph:
    graph = nx.DiGraph()
    for task in tasks:
        graph.add_node(task.key)
    for task in tasks:
        for parent in task.parents:
            if parent.key in graph:
                graph.add_edge(parent.key, task.key, mode=parent.mode)
    return graph


def layout(graph: nx.DiGraph) -> dict[str, tuple[int, int]]:
    """Top-left corner of each box: one row per generation, boxes in key order."""
    where = {}
    for row, layer in enumerate(nx.topological_generations(graph)):
        for col, key in enumerate(sorted(layer)):
            where[key] = (MARGIN + col * (BOX_W + GAP_X), MARGIN + row * (BOX_H + GAP_Y))
    return where


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def to_svg(tasks: list[Task]) -> str:
    graph = task_graph(tasks)
    where = layout(graph)
    width = max((x for x, _ in where.values()), default=0) + BOX_W + MARGIN
    height = max((y for _, y in where.values()), default=0) + BOX_H + MARGIN
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}">'),
             ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
             'markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z"/></marker></defs>')]
    for src, dst, data in sorted(graph.edges(data=True)):
        (x1, y1), (x2, y2) = where[src], where[dst]
        dash = ' stroke-dasharray="5,4"' if data["mode"] == "complete" else ""
        parts.append(f'<line class="edge edge-{escape(data["mode"])}" x1="{x1 + BOX_W // 2}" '
                     f'y1="{y1 + BOX_H}" x2="{x2 + BOX_W // 2}" y2="{y2}" stroke="#555"{dash} '
                     'marker-end="url(#arrow)"/>')
    by_key = {task.key: task for task in tasks}
    for key, (x, y) in sorted(where.items()):
        task = by_key[key]
        parts.append(
            f'<g class="task phase-{escape(task.phase)}" data-key="{escape(key)}" '
            f'transform="translate({x},{y})"><title>{escape(task.name)}</title>'
            f'<rect width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="8" y="16" class="label">{escape(_short(key))}</text>'
            f'<text x="8" y="32" class="jobs">{task.jobs_done}/{task.jobs_total} jobs · '
            f'{escape(task.phase)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
