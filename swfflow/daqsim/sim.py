"""The DAQ simulator: SimPy processes walking a schedule, emitting testbed messages and STFs.

Message rules (documented in docs/messages.md):

* ``run_imminent`` at the start of the ``beam`` block that leads into a run (the testbed sends it
  in beam/not_ready), or right before ``start_run`` when no such block precedes the run;
* ``start_run`` on entering state ``run``; ``pause_run`` on entering ``run/standby``;
  ``resume_run`` on leaving standby for another run substate;
* ``stf_gen`` for every STF, written into ``<buffer>/swf.<run>.run/`` before the message;
* ``end_run`` on leaving state ``run``, at an entry with ``new_run: true``, at the end of the
  schedule, or when interrupted.

Times: message ``timestamp``, ``start`` and ``end`` are simulated times (the epoch plus SimPy's
clock), so a fast simulation of a day carries a day's worth of timestamps; in real time
(``factor`` 1) they equal the wall clock.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, TextIO

import simpy
import simpy.rt

from swfflow.daqsim.files import stf_content, write_stf
from swfflow.daqsim.runs import RunCounter
from swfflow.daqsim.schedule import Entry, Range, Schedule
from swfflow.stream.bus import Bus
from swfflow.stream.messages import (
    EPIC_TOPIC,
    EndRun,
    Envelope,
    PauseRun,
    ResumeRun,
    RunImminent,
    StartRun,
    StfGen,
    run_dataset_name,
    stf_filename,
    to_json,
)

DEFAULT_STF_INTERVAL_S = 2.0  # ePIC: an STF about every 2 s (testbed-protocol.md §8)
DEFAULT_STF_SIZE = 1_000_000
REALTIME_TICK_S = 1.0  # progress refresh while waiting in real time


@dataclass
class SimConfig:
    buffer: Path
    namespace: str | None = None
    sender: str = "swfflow-daqsim"
    destination: str = EPIC_TOPIC
    fast: bool = True
    factor: float = 1.0  # wall seconds per simulated second (SimPy's RealtimeEnvironment)
    seed: int | None = None
    stf_interval: Range = (DEFAULT_STF_INTERVAL_S, DEFAULT_STF_INTERVAL_S)
    stf_size: Range = (DEFAULT_STF_SIZE, DEFAULT_STF_SIZE)
    start_time: datetime | None = None


@dataclass
class RunSummary:
    run_id: str
    stf_files: int = 0
    bytes: int = 0


@dataclass
class SimSummary:
    schedule: str
    seed: int
    simulated_s: float = 0.0
    wall_s: float = 0.0
    messages: Counter = field(default_factory=Counter)
    runs: list[RunSummary] = field(default_factory=list)
    interrupted: bool = False

    @property
    def stf_files(self) -> int:
        return sum(run.stf_files for run in self.runs)

    def as_dict(self) -> dict[str, object]:
        total = sum(self.messages.values())
        return {
            "schedule": self.schedule, "seed": self.seed, "interrupted": self.interrupted,
            "simulated_s": self.simulated_s, "wall_s": round(self.wall_s, 3),
            "messages": dict(self.messages), "messages_total": total,
            "message_rate_per_s": round(total / self.wall_s, 1) if self.wall_s else None,
            "stf_files": self.stf_files, "stf_bytes": sum(run.bytes for run in self.runs),
            "runs": [vars(run) for run in self.runs],
        }


ProgressHook = Callable[[float, SimSummary], None]


class DaqSimulator:
    def __init__(self, schedule: Schedule, config: SimConfig, bus: Bus | None,
                 counter: RunCounter, record: TextIO | None = None,
                 progress: ProgressHook | None = None):
        self.schedule, self.config, self.bus, self.counter = schedule, config, bus, counter
        self.record, self.progress = record, progress
        seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
        self.rng = random.Random(seed)
        self.summary = SimSummary(schedule.source, seed)
        self.epoch = config.start_time or datetime.now(timezone.utc)
        self.env = (simpy.Environment() if config.fast
                    else simpy.rt.RealtimeEnvironment(factor=config.factor, strict=False))
        self.run: RunSummary | None = None
        self.imminent_run: str | None = None  # announced, not started yet
        self.entry: Entry | None = None
        self.run_dir = ""  # absolute STF directory of the current run

    # --- driving ---------------------------------------------------------------------------
    def simulate(self) -> SimSummary:
        started = time.perf_counter()
        main = self.env.process(self._schedule_process())
        if not self.config.fast:
            self.env.process(self._ticker(main))
        try:
            self.env.run(until=main)
        except KeyboardInterrupt:
            self.summary.interrupted = True
            if self.run:
                self._end_run()
        self.summary.simulated_s = self.env.now
        self.summary.wall_s = time.perf_counter() - started
        return self.summary

    def _schedule_process(self):
        previous: Entry | None = None
        entries = self.schedule.entries
        for position, entry in enumerate(entries):
            self.entry = entry
            self._transition(previous, entry, entries[position + 1:])
            end = self.env.now + entry.span_s
            interval = self._interval(entry)
            if self.run and interval != (0, 0):
                yield self.env.process(self._stf_process(entry, interval, end))
            yield self.env.timeout(max(0.0, end - self.env.now))
            previous = entry
        if self.run:
            self._end_run()

    def _stf_process(self, entry: Entry, interval: Range, end: float):
        """STFs back to back until the next one would not fit in this entry."""
        while True:
            length = self._draw(interval)
            if self.env.now + length > end + 1e-9:
                return
            start = self.env.now
            yield self.env.timeout(length)
            self._write_stf(entry, start, self.env.now)

    def _ticker(self, main):
        while not main.triggered:
            self._report()
            yield self.env.timeout(REALTIME_TICK_S)

    # --- transitions ------------------------------------------------------------------------
    def _transition(self, previous: Entry | None, entry: Entry, following: tuple[Entry, ...]):
        if self.run and (not entry.in_run or entry.new_run):
            self._end_run()
        if entry.in_run:
            if self.run is None:
                self._start_run(entry)
            elif previous and previous.paused and not entry.paused:
                self._emit(ResumeRun, state=entry.state, substate=entry.substate)
            elif previous and not previous.paused and entry.paused:
                self._emit(PauseRun, state=entry.state, substate=entry.substate,
                           reason=f"standby (schedule entry {entry.index})")
        elif (entry.state == "beam" and (previous is None or previous.state != "beam")
              and _leads_into_run(following)):
            self._announce(entry)

    def _announce(self, entry: Entry) -> None:
        run_id = str(self.counter.next())
        self.imminent_run = run_id
        self._emit(RunImminent, run_id=run_id, state=entry.state, substate=entry.substate,
                   dataset=run_dataset_name(run_id), container=str(self._run_dir(run_id)))

    def _start_run(self, entry: Entry) -> None:
        if self.imminent_run is None:
            self._announce(entry)
        self.run = RunSummary(self.imminent_run)
        self.run_dir = str(self._run_dir(self.run.run_id))
        os.makedirs(self.run_dir, exist_ok=True)
        self.imminent_run = None
        self.summary.runs.append(self.run)
        self._emit(StartRun, state=entry.state, substate=entry.substate)

    def _end_run(self) -> None:
        self._emit(EndRun, total_stf_files=self.run.stf_files)
        self.run = None

    # --- STFs -------------------------------------------------------------------------------
    def _write_stf(self, entry: Entry, start: float, end: float) -> None:
        run = self.run
        sequence = run.stf_files + 1
        filename = stf_filename(run.run_id, sequence)
        start_time, end_time = self._time(start), self._time(end)
        size = int(self._draw(entry.stf_size or self.config.stf_size))
        header = stf_content(run.run_id, sequence, self.rng, size, state=entry.state,
                             substate=entry.substate, start=start_time.isoformat(),
                             end=end_time.isoformat())
        stf = write_stf(self.run_dir, filename, header, size)
        run.stf_files, run.bytes = sequence, run.bytes + size
        self._emit(StfGen, filename=filename, sequence=sequence, state=entry.state,
                   substate=entry.substate, size_bytes=size, checksum=stf.checksum,
                   file_url=stf.file_url, start=start_time, end=end_time)

    def _run_dir(self, run_id: str) -> Path:
        return (self.config.buffer / run_dataset_name(run_id)).resolve()

    # --- helpers ----------------------------------------------------------------------------
    def _emit(self, model: type[Envelope], **fields) -> None:
        fields.setdefault("run_id", self.run.run_id if self.run else None)
        message = model(namespace=self.config.namespace, sender=self.config.sender,
                        timestamp=self._time(self.env.now), simulation_tick=self.env.now,
                        **fields)
        if self.bus is not None:
            self.bus.publish(self.config.destination, message)
        if self.record is not None:
            self.record.write(to_json(message) + "\n")
        self.summary.messages[message.msg_type] += 1  # type: ignore[attr-defined]
        self._report()

    def _report(self) -> None:
        if self.progress:
            self.progress(self.env.now, self.summary)

    def _interval(self, entry: Entry) -> Range:
        if entry.stf_interval is not None:
            return entry.stf_interval
        return (0.0, 0.0) if entry.paused else self.config.stf_interval

    def _draw(self, bounds: Range) -> float:
        low, high = bounds
        return low if low == high else self.rng.uniform(low, high)

    def _time(self, tick: float) -> datetime:
        return self.epoch + timedelta(seconds=tick)


def _leads_into_run(following: tuple[Entry, ...]) -> bool:
    """True if the entries after a beam entry are more beam entries and then a run."""
    for entry in following:
        if entry.state != "beam":
            return entry.in_run
    return False
