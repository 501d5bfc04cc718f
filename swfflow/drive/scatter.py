"""CWL scatter at run time: expand a step's inputs into jobs, and shape the results back.

Table-driven by :class:`~swfflow.ir.ScatterMethod`. Each job is (index, {port: element}); the
index is a tuple (one entry per scattered port for the cross products) so results can be put
back as a flat list or as nested lists for ``nested_crossproduct``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from swfflow.errors import RunFailed
from swfflow.ir import Scatter, ScatterMethod

Job = tuple[tuple[int, ...], dict[str, Any]]


def _dotproduct(ports: Sequence[str], values: Mapping[str, list]) -> list[Job]:
    lengths = {len(values[p]) for p in ports}
    if len(lengths) > 1:
        raise RunFailed(f"dotproduct scatter over lists of different lengths "
                        f"{ {p: len(values[p]) for p in ports} }",
                        hint="give lists of equal length, or use flat_crossproduct")
    n = lengths.pop() if lengths else 0
    return [((i,), {p: values[p][i] for p in ports}) for i in range(n)]


def _crossproduct(ports: Sequence[str], values: Mapping[str, list]) -> list[Job]:
    ranges = [range(len(values[p])) for p in ports]
    return [(idx, {p: values[p][i] for p, i in zip(ports, idx, strict=True)})
            for idx in itertools.product(*ranges)]


_EXPAND: dict[ScatterMethod, Callable[[Sequence[str], Mapping[str, list]], list[Job]]] = {
    ScatterMethod.DOTPRODUCT: _dotproduct,
    ScatterMethod.FLAT_CROSSPRODUCT: _crossproduct,
    ScatterMethod.NESTED_CROSSPRODUCT: _crossproduct,
}


def expand(scatter: Scatter, values: Mapping[str, Any], where: str) -> list[Job]:
    for port in scatter.ports:
        if not isinstance(values.get(port), list):
            raise RunFailed(f"scatter input {port!r} is not a list: {values.get(port)!r}",
                            where=where, hint="a scattered input must be an array")
    return _EXPAND[scatter.method](scatter.ports, values)


def shape(scatter: Scatter, values: Mapping[str, Any], jobs: list[Job],
          results: list[Any]) -> Any:
    """Results of the jobs, as CWL wants the scattered output: a flat list, or nested lists
    (one level per scattered port) for ``nested_crossproduct``."""
    if scatter.method is not ScatterMethod.NESTED_CROSSPRODUCT:
        return list(results)
    lengths = [len(values[p]) for p in scatter.ports]
    by_index = {idx: r for (idx, _), r in zip(jobs, results, strict=True)}

    def build(prefix: tuple[int, ...]) -> list[Any]:
        level = len(prefix)
        if level == len(lengths) - 1:
            return [by_index[prefix + (i,)] for i in range(lengths[level])]
        return [build(prefix + (i,)) for i in range(lengths[level])]

    return build(())
