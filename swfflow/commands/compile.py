"""``swfflow compile`` and ``swfflow dag``."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from swfflow.errors import ConfigError, SwfflowError
from swfflow.pipeline import build_plan, check_file, load_workflow, parse_config
from swfflow.plan.draw import to_dot, to_mermaid
from swfflow.plan.model import Plan


def _split_text(params: dict) -> str:
    if params.get("noInput"):
        return f"no input, {params.get('nEventsPerJob', 1)} ev/job"
    parts = [f"{params[k]} {label}" for k, label in
             (("nFilesPerJob", "files/job"), ("nGBPerJob", "GB/job")) if k in params]
    if params.get("runUntilClosed"):
        parts.append("until closed")
    return ", ".join(parts) or "-"


def _resources_text(params: dict) -> str:
    if "coreCount" not in params:
        return "-"
    mem = params["ramCount"] * params["coreCount"]
    return f"{params['coreCount']}c {mem} MB {params.get('baseWalltime', '?')}s"


def plan_table(plan: Plan) -> Table:
    table = Table(title=f"{plan.workflow}: {len(plan.tasks)} tasks, "
                        f"{len(plan.datasets)} datasets (run {plan.run})", title_justify="left")
    for column in ("step", "task name", "input", "mode", "split", "resources", "when"):
        table.add_column(column, overflow="fold")
    for task in plan.tasks:
        master = task.params.get("dsForIN") or ("-" if task.params else "(driver)")
        mode = ", ".join(sorted({p.mode for p in task.parents})) or (
            "stream" if task.streaming else "start")
        table.add_row(task.key, task.name, master, mode, _split_text(task.params),
                      _resources_text(task.params), task.when or "")
    return table


# what a first-time user runs next, by the kind of workflow compiled (suffix; "" = Snakefile)
_NEXT = {
    ".cwl": "{prog} run {workflow}{inputs} --outdir out   (run it on this machine; "
            "-o plan.json writes the plan, `swfflow submit` runs it on PanDA)",
    "": "{prog} profile install && {bin}snakemake -s {workflow} --profile panda   (run it on "
        "PanDA; -o plan.json writes the plan)",
}
# an inputs file next to the workflow, found when none was given (the example's is one)
_INPUTS_BESIDE = ("{stem}-inputs.yml", "{stem}-inputs.yaml", "{stem}-job.yml", "{stem}.yml",
                  "{stem}-inputs.json")


def next_step(workflow: str, inputs: str | None) -> str:
    template = _NEXT.get(Path(workflow).suffix, _NEXT[""])
    inputs = inputs or _inputs_beside(workflow)
    called = _invoked_as()
    folder = called.removesuffix("swfflow")  # snakemake is installed beside it
    return "next: " + template.format(prog=shlex.quote(called), workflow=shlex.quote(workflow),
                                      bin=shlex.quote(folder) if folder else "",
                                      inputs=f" {shlex.quote(inputs)}" if inputs else "")


def _inputs_beside(workflow: str) -> str | None:
    path = Path(workflow)
    found = (path.with_name(name.format(stem=path.stem)) for name in _INPUTS_BESIDE)
    return next((str(candidate) for candidate in found if candidate.is_file()), None)


def _invoked_as() -> str:
    """`swfflow` when that is on PATH, else the path it was called by (the README's first
    command runs .venv/bin/swfflow before any venv is activated)."""
    called = sys.argv[0]
    on_path = shutil.which("swfflow")
    if Path(called).name != "swfflow" or (on_path and Path(on_path).resolve() ==
                                          Path(called).resolve()):
        return "swfflow"
    return called


# compile and dag read a workflow the same way: the same --config, parsed by pipeline.parse_config
config_option = click.option("--config", "config", multiple=True, metavar="KEY=VALUE",
                             help="Set a workflow input / Snakemake config value (repeatable).")


@click.command("compile")
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.argument("inputs", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write the plan JSON here ('-' = stdout); without it only the table is shown.")
@click.option("--run", "run", metavar="N", help="Instantiate for this run number "
              "(default: keep the ${RUN} placeholder).")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False),
              envvar="SWFFLOW_PROFILE", help="Profile YAML: site, VO, scopes, names, defaults.")
@click.option("--check", "--dry-run", "check", is_flag=True,
              help="Validate only: exit 0 if the workflow compiles, 2 if not (33: a feature "
                   "swfflow does not support). A Snakemake module (*.smk) without jobs of its "
                   "own is checked rule by rule. Writes nothing.")
@click.option("--strict", is_flag=True, help="Also run cwltool's full validation.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan JSON on stdout, no table.")
@click.option("-q", "--quiet", is_flag=True, help="No table.")
@config_option
def compile_cmd(workflow, inputs, output, run, profile_path, check, strict, as_json, quiet,
                config):
    """Compile WORKFLOW (CWL, Snakefile) with optional INPUTS (YAML/JSON) into a PanDA plan.

    The plan holds one JEDI task-parameter dict per step (per run), the Rucio datasets
    (open while data arrives, closed at end of run or when the producer is done) and the
    dependencies. The same input always gives byte-identical JSON.

    \b
    Examples:
      swfflow compile examples/calib.cwl
      swfflow compile examples/calib.cwl examples/calib-inputs.yml --run 100123 -o plan.json
      swfflow compile examples/calib.cwl --check        # for CI and pre-commit
    """
    if check:
        try:
            summary = check_file(workflow, inputs, profile_path, strict, parse_config(config))
        except SwfflowError as exc:
            click.echo(f"swfflow: {workflow}: invalid: {exc}", err=True)
            sys.exit(exc.exit_code)  # 2, or 33 for a feature swfflow does not support
        click.echo(f"{workflow}: {summary}")
        return
    plan = build_plan(workflow, inputs, profile_path, run, strict, parse_config(config))
    text = plan.to_json()
    if as_json:
        click.echo(text, nl=False)
        return
    if output == "-":
        click.echo(text, nl=False)
    elif output:
        write_plan(Path(output), text)
    if not quiet:
        # piped output (CI logs) gets a wide table instead of rich's 80-column default
        stream = sys.stderr if output == "-" else sys.stdout
        console = Console(stderr=output == "-", width=None if stream.isatty() else 200)
        console.print(plan_table(plan))
        if output and output != "-":
            console.print(f"plan written to {output}")
        console.print(next_step(workflow, inputs), highlight=False, markup=False, soft_wrap=True)


def write_plan(path: Path, text: str) -> None:
    """-o other/plan.json makes other/ (a plan kept beside the workflow's folder is normal)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise ConfigError(f"cannot write the plan: {exc.strerror}", where=str(path),
                          hint="give -o a file in a folder you can write") from None


_FORMATS = {"mermaid": to_mermaid, "dot": to_dot, "svg": to_dot}


@click.command("dag")
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.argument("inputs", required=False, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(sorted(_FORMATS)), default="mermaid",
              show_default=True, help="mermaid text, Graphviz dot, or svg (needs graphviz).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="Output file (default stdout).")
@config_option
def dag_cmd(workflow, inputs, fmt, output, config):
    """Draw the step graph of WORKFLOW: stream edges solid, complete edges dashed,
    sub-workflows boxed.

    \b
    Examples:
      swfflow dag examples/calib.cwl                       # mermaid, paste into markdown
      swfflow dag examples/calib.cwl --format svg -o calib.svg
      swfflow dag Snakefile --config stf_dir=examples/data
    """
    wf, _ = load_workflow(workflow, inputs, parse_config(config))
    text = _FORMATS[fmt](wf)
    data = text.encode()
    if fmt == "svg":
        dot = shutil.which("dot")
        if dot is None:
            raise ConfigError("svg needs Graphviz's 'dot' program, which is not installed",
                              hint="install graphviz (apt-get install graphviz), "
                                   "or use --format mermaid / dot")
        data = subprocess.run([dot, "-Tsvg"], input=data, capture_output=True,
                              check=True).stdout
    if output == "-":
        sys.stdout.buffer.write(data)
    else:
        Path(output).write_bytes(data)
