"""JEDI task statuses and what swfflow makes of them (reference/panda.md §6).

One table, shared by the PanDA backend (to map what the server says) and the PanDA contract
server (to know which statuses exist and which commands each one accepts). Nothing here does
I/O.
"""

from __future__ import annotations

from swfflow.backends.base import TaskState

# Every status a JEDI task can have, mapped to swfflow's view. A status missing from this table
# is UNKNOWN: the task stays active, and the backend reports it after a few polls.
JEDI_TO_STATE: dict[str, TaskState] = {
    # accepted, not yet producing jobs
    **dict.fromkeys(("registered", "defined", "assigning", "ready", "topreprocess",
                     "preprocessing", "toretry", "toincexec", "rerefine", "toreassign",
                     "reassigning"), TaskState.SUBMITTED),
    # inputs not ready, parent running, brokerage failed, on hold
    "pending": TaskState.WAITING,
    # producing jobs; a runUntilClosed task stays here until its dataset is closed
    **dict.fromkeys(("scouting", "scouted", "running", "throttled", "paused", "prepared",
                     "finishing", "passed"), TaskState.RUNNING),
    "done": TaskState.SUCCEEDED,
    "finished": TaskState.PARTIAL,  # some inputs failed
    # on the way to failed: downstream treats it as failed, the backend keeps polling
    **dict.fromkeys(("toabort", "aborting", "tobroken"), TaskState.FAILING),
    **dict.fromkeys(("failed", "broken", "aborted"), TaskState.FAILED),
    "exhausted": TaskState.EXHAUSTED,
}

JEDI_STATUSES: tuple[str, ...] = tuple(JEDI_TO_STATE)

# Statuses in which JEDI takes a command (pandaserver's DBProxy._check_command_allowed).
# kill/finish: anything but these; retry: only these (exhausted needs the production role);
# incexec (a resubmission of the same task name): only these.
KILL_FINISH_REJECTED = frozenset({"finished", "done", "prepared", "broken", "aborted", "toabort",
                                  "aborting", "failed"})
RETRY_ACCEPTED = frozenset({"finished", "failed", "exhausted"})
INCEXEC_ACCEPTED = frozenset({"finished", "failed", "aborted", "done", "exhausted"})
PAUSE_REJECTED = frozenset({"finished", "failed", "done", "aborted", "broken", "paused"})
RESUME_ACCEPTED = frozenset({"paused", "throttled", "staging"})

# what a command leaves behind once it has been acted on, so a repeated command is a no-op
KILLED_OR_KILLING = frozenset({"toabort", "aborting", "aborted"})
FINISHED_OR_FINISHING = frozenset({"finishing", "passed", "done", "finished"})


def to_state(jedi_status: str) -> TaskState:
    """swfflow's state for a JEDI status; UNKNOWN for anything not in the table."""
    return JEDI_TO_STATE.get(jedi_status, TaskState.UNKNOWN)


def command_allowed(command: str, status: str, *,
                    production_role: bool = False) -> tuple[bool, str]:
    """Whether JEDI accepts ``command`` for a task in ``status``; the second item is the
    extra reason JEDI appends to its rejection message."""
    rules = {
        "kill": lambda: status not in KILL_FINISH_REJECTED,
        "finish": lambda: status not in KILL_FINISH_REJECTED,
        "retry": lambda: status in RETRY_ACCEPTED,
        "incexec": lambda: status in INCEXEC_ACCEPTED,
        "pause": lambda: status not in PAUSE_REJECTED,
        "resume": lambda: status in RESUME_ACCEPTED,
    }
    check = rules.get(command)
    if check is None or not check():
        return False, ""
    if command == "retry" and status == "exhausted" and not production_role:
        return False, "and production role is missing"
    return True, ""
