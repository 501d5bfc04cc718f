"""CWL v1.2 conformance through swfflow, in process (cwltest's pytest plugin + its hook).

Run it (it is not part of the default ``pytest tests`` run: it takes minutes)::

    pytest tests/conformance -n 2

(the tags default to workflow, scatter, conditional, subworkflow, multiple_input, step_input,
required; ``--cwl-tags`` picks others, ``--cwl-include name,…`` single tests).

Each CWL test passes or fails on its own; the session fails only if fewer tests pass than the
floor recorded in ``floor.json`` (raise it as swfflow improves). Per-tag pass rates are written
to ``conformance-results.json`` in the rootdir's ``.swfflow`` folder and printed at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ENTRY = HERE / "cwl-v1.2.cwltest.yaml"  # imports the suite from its default place
FLOOR_FILE = HERE / "floor.json"
TAGS = ("workflow", "scatter", "conditional", "subworkflow", "multiple_input", "step_input",
        "required")
_RESULTS_DIR_ENV = "SWFFLOW_CONFORMANCE_RESULTS"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect the suite only when asked for (``--cwl-tags`` or this folder named)."""
    if collection_path.name.endswith(".cwltest.yaml"):
        return None if config.getoption("cwl_tags") or _folder_named(config) else True
    return None


def pytest_cwl_execute_test(config: Any, processfile: str, jobfile: str | None
                            ) -> tuple[int, dict[str, Any] | None]:
    from swfflow.commands.run import run_for_cwltest
    return run_for_cwltest(processfile, jobfile, config.basedir, config.outdir)


def _folder_named(config: pytest.Config) -> bool:
    return any(str(HERE) in str(Path(a.split("::")[0]).resolve()) for a in config.args)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if _folder_named(config) and not config.getoption("cwl_tags"):
        config.option.cwl_tags = ",".join(TAGS)  # the tags the floor is recorded for
    if not os.environ.get(_RESULTS_DIR_ENV):
        os.environ[_RESULTS_DIR_ENV] = tempfile.mkdtemp(prefix="swfflow-cwl-")
    if config.getoption("cwl_tags") or _folder_named(config):
        _load_suite_where_it_is()


def _load_suite_where_it_is() -> None:
    """cwltest loads ENTRY; give it the suite's own document wherever the suite is
    ($SWFFLOW_CWL_CONFORMANCE or ../shared/cwl-v1.2: tests/conformance/suite.py), or stop
    with how to get it."""
    from cwltest import utils

    from tests.conformance.suite import DOCUMENT, missing_message, suite_dir

    found = suite_dir()
    if found is None:
        raise pytest.UsageError(missing_message())
    load = utils.load_and_validate_tests
    if getattr(load, "swfflow_suite", None) == found:
        return
    def load_suite(path: str) -> Any:
        return load(str(found / DOCUMENT) if Path(path) == ENTRY else path)
    load_suite.swfflow_suite = found  # type: ignore[attr-defined]
    utils.load_and_validate_tests = load_suite


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" or not report.nodeid.split("::")[0].endswith(".cwltest.yaml"):
        return
    out = Path(os.environ[_RESULTS_DIR_ENV]) / f"{os.getpid()}.jsonl"
    with out.open("a") as handle:
        handle.write(json.dumps({"id": report.nodeid.split("::")[-1],
                                 "passed": report.passed}) + "\n")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # xdist worker: the controller sums up
    results_dir = Path(os.environ.get(_RESULTS_DIR_ENV, ""))
    rows = [json.loads(line) for f in sorted(results_dir.glob("*.jsonl"))
            for line in f.read_text().splitlines()]
    if not rows:
        return
    summary = _summarise(rows, session.config)
    lines = [f"CWL v1.2 conformance through swfflow: {summary['passed']}/{summary['total']} "
             f"passed ({100 * summary['passed'] / summary['total']:.1f} %)"]
    for tag, (passed, total) in sorted(summary["tags"].items()):
        lines.append(f"  {tag:<15} {passed:>4}/{total:<4} {100 * passed / max(total, 1):5.1f} %")
    floor = json.loads(FLOOR_FILE.read_text())["passed"] if FLOOR_FILE.exists() else 0
    lines.append(f"floor (tests/conformance/floor.json): {floor}")
    report = "\n".join(lines)
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(report)
    (Path(session.config.rootpath) / ".swfflow").mkdir(exist_ok=True)
    (Path(session.config.rootpath) / ".swfflow" / "conformance-results.json").write_text(
        json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if session.config.getoption("cwl_tags") and not session.config.getoption("cwl_include"):
        # individual CWL failures are expected; only a drop below the floor fails the run
        session.exitstatus = (pytest.ExitCode.TESTS_FAILED if summary["passed"] < floor
                              else pytest.ExitCode.OK)


def _summarise(rows: list[dict[str, Any]], config: pytest.Config) -> dict[str, Any]:
    from cwltest import utils

    tests, _ = utils.load_and_validate_tests(str(ENTRY))
    tags_of = {(t.get("label") or utils.shortname(str(t.get("id", "")))): t.get("tags", [])
               for t in tests}
    passed_ids = {r["id"] for r in rows if r["passed"]}
    seen = {r["id"] for r in rows}
    per_tag: dict[str, list[int]] = {}
    for test_id in seen:
        for tag in tags_of.get(test_id, []):
            if tag in TAGS:
                entry = per_tag.setdefault(tag, [0, 0])
                entry[0] += test_id in passed_ids
                entry[1] += 1
    return {"passed": len(passed_ids), "total": len(seen),
            "tags": {k: tuple(v) for k, v in per_tag.items()},
            "failed": sorted(seen - passed_ids)}
