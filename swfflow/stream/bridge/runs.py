"""The bridge's in-memory view of its open runs, kept in step with the store: each run's row,
the STFs recorded but not yet attached, the task holds still to act on, and each run's flow
(the one engine, :class:`~swfflow.drive.flow_run.FlowRun`).
The loop's handlers and the reconcilers (:mod:`.work`, :mod:`.lanes`) share this one object."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from swfflow.drive.flow_run import FlowRun
from swfflow.stream.bridge.intake import Rejected
from swfflow.stream.store import OPEN_PHASES, PHASE_DONE, PHASE_FAILED, BridgeStore, StfRow

log = logging.getLogger("swfflow.bridge")


class OpenRuns:
    def __init__(self, store: BridgeStore, new_flow: Callable[[str], FlowRun]):
        self.store = store
        self.new_flow = new_flow  # a run's flow over the store's saved task state
        self.rows: dict[str, dict[str, Any]] = {}  # open runs (store rows, kept in sync)
        self.pending: list[StfRow] = []  # recorded, not attached, in arrival order
        self.holds: dict[str, dict[str, Any]] = {}  # br_holds rows still to act on
        self.flows: dict[str, FlowRun] = {}

    def resume(self) -> None:
        """Load every open run and every recorded-but-unattached STF from the store."""
        for row in self.store.runs(OPEN_PHASES):
            self.rows[row["run_id"]] = row
        self.pending = self.store.unattached(list(self.rows))
        self.holds = {h["run_id"]: h for h in self.store.holds_to_keep(list(self.rows))}
        if self.rows:
            log.info("resuming %d open run(s) %s with %d STF(s) to attach", len(self.rows),
                     ", ".join(self.rows), len(self.pending))

    def known(self, run_id: str) -> dict[str, Any]:
        row = self.rows.get(run_id) or self.store.run(run_id)
        if row is None:
            raise Rejected(f"unknown run {run_id}: no run_imminent was received for it")
        return row

    def update(self, run_id: str, **values: Any) -> None:
        """Store the run's new values; a run done or failed leaves the view."""
        self.store.update_run(run_id, **values)
        if run_id in self.rows:
            self.rows[run_id].update(values)
            if values.get("phase") in (PHASE_DONE, PHASE_FAILED):
                del self.rows[run_id]
                flow = self.flows.pop(run_id, None)
                if flow is not None:
                    flow.detach()

    def flow(self, run_id: str) -> FlowRun:
        """The run's flow, started; a new one resumes from the state store (tasks are found
        by name, never submitted twice; failed ones are retried)."""
        flow = self.flows.get(run_id)
        if flow is None:
            flow = self.new_flow(run_id)
            flow.start()  # creates the datasets (idempotent), starts walking the run's flow
            self.flows[run_id] = flow
        return flow

    def detach_all(self) -> None:
        """The bridge stops: each run's flow stops walking; its state is saved for the next."""
        for flow in self.flows.values():
            flow.detach()
        self.flows.clear()

    def drop_pending(self, keep: Callable[[StfRow], bool]) -> None:
        """Forget the pending STFs ``keep`` says no to (attached, rejected, their run failed)."""
        self.pending = [row for row in self.pending if keep(row)]
