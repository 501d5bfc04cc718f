"""The status model as text for a terminal (``swfflow status``): one line per task that fits
80 columns, each error in full below its table, elapsed and ETA per run."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from swfflow.monitor.model import FINISHED_BAD, Instance, Run, Status, Task

PHASE_STYLE = {"succeeded": "green", "skipped": "dim", "failed": "bold red", "blocked": "red",
               "killed": "red", "running": "cyan", "submitted": "blue", "paused": "yellow"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def why(task: Task) -> str:
    """The reason in one clause: a blocked task names the parent, not the whole chain
    ("not started: parent a blocked (not started: parent b failed (…))" → its first part)."""
    if task.phase == "blocked":
        return task.message.split(" (", 1)[0]
    return task.message


def task_table(tasks: list[Task]) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, expand=False)
    table.add_column("task", overflow="ellipsis", no_wrap=True, max_width=36)
    table.add_column("state", no_wrap=True)
    table.add_column("jobs", justify="right", no_wrap=True)
    table.add_column("fail", justify="right", no_wrap=True)
    table.add_column("try", justify="right", no_wrap=True)
    table.add_column("id", overflow="ellipsis", no_wrap=True, max_width=12)
    for task in tasks:
        table.add_row(task.key, Text(task.phase, style=PHASE_STYLE.get(task.phase, "")),
                      f"{task.jobs_done}/{task.jobs_total}", str(task.jobs_failed),
                      str(task.attempts or "-"), task.task_id or "-")
    return table


def errors(tasks: list[Task]) -> list[RenderableType]:
    """Each failed task's message in full (the tool's error), then what it blocked."""
    out: list[RenderableType] = []
    for task in tasks:
        if task.phase in FINISHED_BAD and task.message:
            out.append(Text.assemble((f"{task.key}: ", PHASE_STYLE.get(task.phase, "")),
                                     why(task)))
    return out


def run_header(run: Run) -> Text:
    stf = f"STF {run.stf_attached}/{run.stf_announced if run.stf_announced is not None else '?'}"
    return Text.assemble(
        (f"run {run.run}", "bold"), f" ({run.namespace or '-'}) ",
        (run.phase, PHASE_STYLE.get(run.phase, "")),
        f" · DAQ {run.daq_state or '-'}/{run.daq_substate or '-'}\n{stf} attached, "
        f"{run.stf_processed} processed · elapsed {duration(run.elapsed_s)} · "
        f"ETA {duration(run.eta_s)}")


def site_lines(run: Run) -> list[RenderableType]:
    """One line per E1 site (within 80 columns): copies, running checksum, equal to the
    DAQ's or not, compared at run end; then the alarm in full."""
    out: list[RenderableType] = []
    for site in run.sites:
        verdict = (("= DAQ", "green") if site.matches_daq else
                   ("≠ DAQ", "bold red") if site.alarm else ("≠ DAQ yet", "yellow"))
        out.append(Text.assemble(
            f"  {site.rse} {site.files}/{site.daq_files} copied, sum {site.checksum} ",
            verdict, ", checked" if site.checked else "",
            (", DOWN" + (f": {site.down_reason}" if site.down_reason else ""), "red")
            if site.down else ""))
        if site.alarm:
            out.append(Text(f"    {site.alarm}", style="red"))
    return out


def instance_header(inst: Instance) -> Text:
    return Text.assemble((inst.instance, "bold"), f" [{inst.source}] ",
                         (inst.state, PHASE_STYLE.get(inst.state, "")),
                         f" · run {inst.run}" + (f" · {inst.panda_url}" if inst.panda_url else ""))


def render(status: Status) -> Group:
    parts: list[RenderableType] = []
    in_runs = {run.instance for run in status.runs}
    for run in status.runs:
        parts += [run_header(run), *site_lines(run), task_table(run.tasks), *errors(run.tasks)]
        if run.message:
            parts.append(Text(run.message, style="yellow"))
        parts.append(Text(""))
    for inst in [i for i in status.instances if i.instance not in in_runs] + status.submitted:
        parts += [instance_header(inst), task_table(inst.tasks), *errors(inst.tasks), Text("")]
    if status.datasets:
        table = Table(box=None, pad_edge=False, title="datasets", title_justify="left")
        table.add_column("dataset", overflow="fold")
        table.add_column("state", no_wrap=True)
        table.add_column("files", justify="right", no_wrap=True)
        for ds in status.datasets:
            table.add_row(ds.did, "open" if ds.open else "closed", str(ds.files))
        parts.append(table)
    if status.dead_letters:
        last = status.dead_letters[-1].reason.splitlines()[0]
        parts.append(Text(f"{len(status.dead_letters)} dead letter(s); last: {last}",
                          style="red"))
    if not parts:
        parts.append(Text("no runs recorded in this state store"))
    return Group(*parts)


def finished(status: Status) -> bool:
    """Nothing left to watch: every run and instance is in a final state."""
    states = ([r.phase for r in status.runs] + [i.state for i in status.instances]
              + [i.state for i in status.submitted])
    return all(s in ("done", "failed", "killed", "succeeded") for s in states)
