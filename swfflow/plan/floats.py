"""Floats keep the document's spelling through plan JSON (pure).

cwltool writes a float input on the command line as the CWL document spelled it
(``1.23e5`` → ``123000``, ``0.00001`` → ``0.00001``): ruamel's ``ScalarFloat`` remembers the
spelling. A tool dict that travels as JSON (the plan's payload, the local executor's state, a
PanDA job's sandbox) would lose it and print ``123000.0`` or ``1e-05``. So tool dicts carry
such floats as ``{"$swf:float": "1.23e5"}`` and become ``ScalarFloat`` s again just before
cwltool loads the tool (:func:`unspelled`).
"""

from __future__ import annotations

from typing import Any

MARKER = "$swf:float"


def spelled(value: Any) -> Any:
    """``value`` with every ruamel ``ScalarFloat`` replaced by its spelling marker."""
    from ruamel.yaml.scalarfloat import ScalarFloat

    if isinstance(value, ScalarFloat):
        from ruamel.yaml.representer import RoundTripRepresenter
        return {MARKER: RoundTripRepresenter().represent_scalar_float(value).value}
    if isinstance(value, dict):
        return {k: spelled(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [spelled(v) for v in value]
    return value


def unspelled(value: Any) -> Any:
    """The inverse of :func:`spelled`: markers back to ``ScalarFloat`` s."""
    if isinstance(value, dict):
        if set(value) == {MARKER}:
            from ruamel.yaml import YAML
            return YAML(typ="rt").load(str(value[MARKER]))
        return {k: unspelled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unspelled(v) for v in value]
    return value
