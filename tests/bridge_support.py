"""Shared helpers of the bridge tests: simulate a schedule, build a bridge, check catalogs."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from swfflow.daqsim.runs import RunCounter
from swfflow.daqsim.schedule import load_schedule
from swfflow.daqsim.sim import DaqSimulator, SimConfig, SimSummary

WORKFLOW = Path(__file__).parent / "data" / "bridge" / "stfsum.cwl"

# run_imminent, start, 3 STFs, pause, resume, 3 STFs, end_run
ONE_RUN = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,2"}
- {state: run, substate: physics, span: "0,0,0,0,3", stf_interval: 1}
- {state: run, substate: standby, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,3", stf_interval: 1}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""


def schedule(tmp: Path, text: str = ONE_RUN, name: str = "schedule.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def simulate(tmp: Path, *, text: str = ONE_RUN, bus=None, namespace: str | None = None,
             record: Path | None = None, seed: int = 1, counter: Path | None = None,
             fast: bool = True, factor: float = 1.0, stf_size: int = 4096) -> SimSummary:
    """Run the DAQ simulator; messages to ``bus`` and/or appended to ``record``."""
    plan = load_schedule(schedule(tmp, text, f"schedule-{seed}.yaml"))
    config = SimConfig(buffer=tmp / "buffer", namespace=namespace, fast=fast, factor=factor,
                       seed=seed, stf_size=(stf_size, stf_size))
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(record, "a", encoding="utf-8")) if record else None
        simulator = DaqSimulator(plan, config, bus, RunCounter(counter or tmp / "run-counter"),
                                 record=sink)
        return simulator.simulate()


def recorded(tmp: Path, **options) -> tuple[Path, SimSummary]:
    log = tmp / "messages.jsonl"
    summary = simulate(tmp, record=log, **options)
    return log, summary


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def setup_for(tmp: Path, *, state: str | None = None, catalog: str = "local",
              rucio_config: str | None = None, **options):
    from swfflow.stream.bridge.setup import Setup

    options.setdefault("tick_s", 0.2)
    options.setdefault("batch_ms", 20.0)
    return Setup(workflow=str(WORKFLOW), catalog=catalog, backend="local",
                 state=state or f"sqlite:///{tmp / 'state' / 'bridge.db'}",
                 workdir=tmp / "work", jobs=2, no_container=True, rucio_config=rucio_config,
                 options=options)


def string_log(*bodies: str) -> io.StringIO:
    return io.StringIO("\n".join(bodies) + "\n")
