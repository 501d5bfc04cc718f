"""The ``swfflow`` command line.

Subcommands live in their own modules (``swfflow/commands/*.py``) and are imported only when
called, so ``swfflow --help`` stays fast and a broken optional dependency affects one command.
To add a command: write ``swfflow/commands/<name>.py`` with a click command or group, and add
one row to :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from swfflow import __version__
from swfflow.errors import SwfflowError

# name → ("module:attribute", one-line help, group of GROUPS). Ordered as shown in --help;
# a row without a group (or with an unknown one) is listed under "other".
COMMANDS: dict[str, tuple[str, ...]] = {
    "compile": ("swfflow.commands.compile:compile_cmd",
                "Compile a CWL workflow or Snakefile into a PanDA task plan (JSON).", "author"),
    "dag": ("swfflow.commands.compile:dag_cmd",
            "Draw the step graph of a workflow (mermaid, dot or svg).", "author"),
    "run": ("swfflow.commands.run:run_cmd",
            "Compile and run a workflow on this machine (no servers needed).", "run"),
    "status": ("swfflow.commands.status:status_cmd",
               "Show the state of each step, task and job of a workflow instance.", "operate"),
    "monitor": ("swfflow.commands.monitor:monitor_cmd",
                "Serve a live web view, REST API and Prometheus metrics of runs and tasks.",
                "operate"),
    "submit": ("swfflow.commands.submit:submit_cmd",
               "Submit a workflow or plan to PanDA + Rucio.", "operate"),
    "kill": ("swfflow.commands.submit:kill_cmd", "Kill every task of a submitted workflow.",
             "operate"),
    "retry": ("swfflow.commands.submit:retry_cmd",
              "Retry the failed tasks of a submitted workflow.", "operate"),
    "services": ("swfflow.commands.services:services_group",
                 "Start, stop and check the local ActiveMQ + Rucio services.", "operate"),
    "daqsim": ("swfflow.commands.daqsim:daqsim_cmd",
               "Simulate the ePIC DAQ from a YAML schedule: messages and real STF files.", "run"),
    "bridge": ("swfflow.commands.bridge:bridge_cmd",
               "Drive the compiled workflow from DAQ run messages (long-running).", "operate"),
    "template": ("swfflow.commands.template:template_group",
                 "List, show, render and create parameterized workflow templates.", "author"),
    "profile": ("swfflow.commands.profile:profile_group",
                "Install the Snakemake 'panda' profile.", "run"),
    "pilot": ("swfflow.commands.pilot:pilot_cmd",
              "Serve a PanDA queue's jobs here (stage in, run, stage out, report).", "operate"),
    "job": ("swfflow.commands.job:job_cmd",
            "Run one PanDA job of a compiled plan on a worker node (what jobParameters call).",
            "run"),
    "snakemake-job": ("swfflow.commands.snakemake_job:snakemake_job_cmd",
                      "Run one job of a compiled Snakefile's step with Snakemake (what its "
                      "tasks call).", "run"),
}

# group → (heading, one example). --help lists the groups in this order, then "other".
GROUPS: dict[str, tuple[str, str]] = {
    "author": ("Author (write, check and draw workflows)",
               "swfflow compile examples/calib.cwl --check"),
    "run": ("Run (on this machine, on a worker node, the DAQ simulator)",
            "swfflow run examples/calib.cwl examples/calib-inputs.yml --outdir out"),
    "operate": ("Operate (PanDA + Rucio, the DAQ bridge, the local services)",
                "swfflow submit examples/calib.cwl --run 100123 --follow"),
    "other": ("Other commands", ""),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (target, *_) in COMMANDS.items() if _importable(target)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attribute = COMMANDS[name][0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # not built yet
            raise
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        grouped: dict[str, list[tuple[str, str]]] = {group: [] for group in GROUPS}
        for name in self.list_commands(ctx):
            _, text, *group = COMMANDS[name]
            grouped[group[0] if group and group[0] in GROUPS else "other"].append((name, text))
        for group, rows in grouped.items():
            heading, example = GROUPS[group]
            if rows:
                with formatter.section(heading):
                    formatter.write_dl(rows)
                    if example:  # unwrapped: a command to copy
                        formatter.write(f"{'':{formatter.current_indent}}e.g. {example}\n")


def _importable(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="swfflow")
def cli() -> None:
    """swfflow: CWL and Snakemake workflows → PanDA tasks over Rucio datasets,
    driven by ePIC DAQ run messages.

    New here? Start with `swfflow compile examples/calib.cwl`: it prints the plan and what
    to run next. Every command has --help with examples.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one clear message and exit non-zero, no traceback."""
    try:
        # without standalone mode click returns ctx.exit(n)'s code instead of exiting
        code = cli.main(args=argv, prog_name="swfflow", standalone_mode=False)
    except SwfflowError as exc:
        click.echo(f"swfflow: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("swfflow: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
