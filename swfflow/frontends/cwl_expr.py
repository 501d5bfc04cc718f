"""Compile-time evaluation of CWL parameter references and JavaScript expressions.

Evaluation itself is cwl-utils' (the code cwltool runs: parameter references in Python,
JavaScript in a sandboxed node process). This module only decides *whether* an expression can
be evaluated now: it finds the step inputs an expression reads, and evaluates it when all of
them have values known at compile time (workflow inputs from the job file or defaults).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from cwl_utils.errors import WorkflowException
from cwl_utils.expression import do_eval, needs_parsing

from ..errors import WorkflowError

# inputs.name / inputs["name"] / inputs['name']
_INPUT_REFERENCE = re.compile(r"""\binputs(?:\.(\w+)|\[\s*["']([^"']+)["']\s*\])""")
# any other use of `inputs` (Object.keys(inputs), inputs[variable], ...) may read every input
_BARE_INPUTS = re.compile(r"\binputs\b(?!\s*(?:\.\w|\[\s*[\"']))")

UNKNOWN = object()  # a value not known at compile time

# File/Directory fields that exist only once the runner stages the object (a job file or a
# default names a File by location; its size, contents, checksum or path come later)
_STAGED_CLASSES = ("File", "Directory")


def is_expression(value: Any) -> bool:
    return needs_parsing(value)


def reads_self(expression: str) -> bool:
    return re.search(r"\bself\b", expression) is not None


def referenced_inputs(expression: str, all_ports: Iterable[str]) -> tuple[str, ...]:
    """The step inputs ``expression`` reads (all of them if it uses ``inputs`` opaquely)."""
    ports = sorted(all_ports)
    if _BARE_INPUTS.search(expression):
        return tuple(ports)
    names = {a or b for a, b in _INPUT_REFERENCE.findall(expression)}
    return tuple(sorted(names))


@contextmanager
def _quiet_cwl_utils_logger():
    # cwl-utils logs a full traceback before re-raising; the user gets our one-line error.
    logger = logging.getLogger("cwl_utils")
    previous, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = previous


def evaluate(expression: Any, inputs: Mapping[str, Any], *, self_value: Any = None,
             requirements: Sequence[Mapping[str, Any]] = (), cwl_version: str = "v1.2",
             where: str | None = None) -> Any:
    """Evaluate ``expression`` now. Raise WorkflowError if it fails on known values."""
    if not is_expression(expression):
        return expression
    try:
        with _quiet_cwl_utils_logger():
            return do_eval(expression, dict(inputs), [dict(r) for r in requirements],
                           outdir="/outdir", tmpdir="/tmpdir",
                           resources={"cores": 1, "ram": 1024, "outdirSize": 1024,
                                      "tmpdirSize": 1024},
                           context=self_value, cwlVersion=cwl_version, timeout=30)
    except (WorkflowException, Exception) as exc:  # node errors, JS syntax errors, ...
        uses_js = "${" in expression or not _is_parameter_reference(expression)
        raise WorkflowError(
            f"expression {expression!r} failed on the known input values: {_reason(exc)}",
            where=where,
            hint="JavaScript needs InlineJavascriptRequirement on the workflow"
            if uses_js else "check the input names the expression reads",
        ) from None


# node's "TypeError: ..." / "SyntaxError: ..." line, inside cwl-utils' long report
_JS_ERROR_LINE = re.compile(r"^\s*([A-Z]\w*Error: .*)$", re.MULTILINE)


def _reason(exc: Exception) -> str:
    """The line of an evaluation failure that says what went wrong."""
    text = str(exc).strip()
    found = _JS_ERROR_LINE.search(text)
    if found:
        return found.group(1)
    lines = text.splitlines()
    return lines[-1] if lines else type(exc).__name__


_PARAMETER_REFERENCE = re.compile(r"^\$\((inputs|self|runtime)(\.\w+|\[\d+\]|\[['\"][^'\"]*['\"]\])*\)$")


def _is_parameter_reference(expression: str) -> bool:
    return all(_PARAMETER_REFERENCE.match(part) for part in re.findall(r"\$\([^()]*\)", expression)) \
        and "${" not in expression


def known(value: Any) -> bool:
    return value is not UNKNOWN


def partly_known(value: Any) -> bool:
    """True if ``value`` holds a File or Directory: known by location at compile time, but its
    staged fields (size, contents, checksum, path, listing) are filled only at run time."""
    if isinstance(value, Mapping):
        return value.get("class") in _STAGED_CLASSES or any(map(partly_known, value.values()))
    if isinstance(value, list | tuple):
        return any(map(partly_known, value))
    return False


def evaluate_if_known(expression: Any, values: Mapping[str, Any], ports: Iterable[str], *,
                      self_port: str | None = None, requirements: Sequence[Mapping[str, Any]] = (),
                      cwl_version: str = "v1.2", where: str | None = None) -> Any:
    """Compile-time evaluation of ``expression`` over step input ``values``.

    UNKNOWN (decide at run time) when it reads a value not known now, or when it fails or
    yields null on a value only partly known now (a File whose size is read, say): the runner
    evaluates it again on the staged values. Only an expression that is invalid in itself (a
    JavaScript syntax error) or that fails on fully known values is a user error.
    """
    if not is_expression(expression):
        return expression
    reads = set(referenced_inputs(str(expression), ports))
    if self_port is not None and reads_self(str(expression)):
        reads.add(self_port)
    read_values = [values.get(p) for p in reads]
    if any(v is UNKNOWN for v in read_values):
        return UNKNOWN
    partial = any(map(partly_known, read_values))
    known_values = {p: v for p, v in values.items() if v is not UNKNOWN}
    try:
        result = evaluate(expression, known_values, requirements=requirements,
                          self_value=values.get(self_port) if self_port else None,
                          cwl_version=cwl_version, where=where)
    except WorkflowError as error:
        if partial and "SyntaxError" not in error.what:
            return UNKNOWN
        raise
    return UNKNOWN if partial and result is None else result
