"""``swfflow snakemake-job``: run one job of a compiled Snakefile's step (or expand a checkpoint).

The process of every Snakemake step (:mod:`swfflow.frontends.snakemake_tools`). It runs in the
job's output folder (cwltool's, or a worker's sandbox) and:

1. finds the working directory: the folder of the Snakefile (``--snakefile``, followed
   through the symlink the job's staging made), as ``snakemake`` itself uses;
2. works out the job's wildcards: ``--wildcard NAME=VALUE``, ``--wildcards-json``, or read
   from the path of ``--split-input`` with the rule's input pattern (``--split-pattern``);
3. has Snakemake execute exactly that job (``--target-jobs RULE:w=v --allowed-rules RULE``),
   as Snakemake's remote executors do, with the job's ``--cores``;
4. links the job's outputs (``--outputs-json``: port → patterns) into the output folder and
   writes ``cwl.output.json``, so the engine registers them in the step's datasets.

``--expand RULES`` instead lists, per rule, the wildcards of the jobs Snakemake's job graph has
once the checkpoints' outputs are there (JSON strings: the next steps' scatter values).
Exit codes: Snakemake's on a failed job; 2 on bad arguments.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import click

from swfflow.errors import WorkflowError

SNAKEMAKE_TIMEOUT_S = 7 * 24 * 3600  # a job's own walltime is the executor's to enforce
TEMP_NOTES = Path(".snakemake") / "swfflow-temp"  # in the working directory
OUTPUT_OBJECT = "cwl.output.json"  # cwltool reads the output object from here


@click.command("snakemake-job")
@click.option("--snakefile", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The Snakefile (its folder is the working directory).")
@click.option("--rule", default=None, help="The rule whose job runs.")
@click.option("--outputs-json", default="{}", help="Output port → the rule's output patterns.")
@click.option("--directories", default="", help="Output ports that are directory() outputs.")
@click.option("--temp-outputs", default="", help="Output ports that are temp() outputs.")
@click.option("--wildcard", "wildcards", multiple=True, metavar="NAME=VALUE")
@click.option("--wildcards-json", default=None, help="The job's wildcards as a JSON object.")
@click.option("--split-input", default=None, help="The job's one file of the split port.")
@click.option("--split-pattern", default=None, help="The split port's input pattern.")
@click.option("--config-json", default="{}", help="The config the plan was compiled with.")
@click.option("--cores", default=1, type=int, show_default=True)
@click.option("--expand", "expand_rules", default=None, metavar="RULE,...",
              help="List the jobs of these rules after the checkpoints ran (no job runs).")
def snakemake_job_cmd(snakefile: str, rule: str | None, outputs_json: str, directories: str,
                      temp_outputs: str, wildcards: tuple[str, ...], wildcards_json: str | None,
                      split_input: str | None, split_pattern: str | None, config_json: str,
                      cores: int, expand_rules: str | None) -> None:
    """Run one job of RULE with Snakemake in the Snakefile's folder (internal: the command of
    a compiled Snakefile's tasks)."""
    path = Path(os.path.realpath(snakefile))
    config = json.loads(config_json)
    if expand_rules is not None:
        write_output_object(expand(path, config, expand_rules.split(",")))
        return
    if not rule:
        raise WorkflowError("snakemake-job: --rule is required", hint="name the rule to run")
    values = job_wildcards(wildcards, wildcards_json, split_input, split_pattern, path.parent)
    code = run_snakemake(path, rule, values, config, cores)
    if code != 0:
        raise click.exceptions.Exit(code)
    outputs = json.loads(outputs_json)
    write_output_object(collect_outputs(path.parent, outputs, values,
                                        set(filter(None, directories.split(",")))))
    temps = [apply_pattern(pattern, values) for port in filter(None, temp_outputs.split(","))
             for pattern in outputs.get(port, ())]
    if temps:
        note_temp_files(path.parent, temps)


def expand(snakefile: Path, config: dict[str, Any], rules: list[str]) -> dict[str, list[str]]:
    from swfflow.frontends.snakemake_dag import build_dag
    dag = build_dag(snakefile, config, everything=False)
    jobs: dict[str, list[str]] = {rule: [] for rule in rules}
    for job in dag.jobs:
        if job.rule in jobs:
            jobs[job.rule].append(json.dumps(job.wildcards, sort_keys=True))
    return {rule: sorted(set(found)) for rule, found in jobs.items()}


def job_wildcards(pairs: tuple[str, ...], as_json: str | None, split_input: str | None,
                  split_pattern: str | None, workdir: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise WorkflowError(f"snakemake-job: --wildcard {pair!r} is not NAME=VALUE")
        values[name] = value
    if as_json:
        values.update(json.loads(as_json))
    if split_input and split_pattern:
        from swfflow.runtime.files import location_path
        values.update(wildcards_of_file(location_path(split_input), split_pattern, workdir))
    return values


def wildcards_of_file(file: Path, pattern: str, workdir: Path) -> dict[str, str]:
    """The wildcards of the job reading ``file``: the engine hands a job its copy of the
    file (named by its basename), so the job's file is the one of the working directory that
    the rule's input pattern matches, with that basename and the same content."""
    from snakemake.io import glob_wildcards
    found = glob_wildcards(str(workdir / pattern))
    names = found._fields
    candidates = []
    for values in zip(*found, strict=True):
        wildcards = dict(zip(names, values, strict=True))
        path = workdir / apply_pattern(pattern, wildcards)
        if path.name == file.name:
            candidates.append((wildcards, path))
    if len(candidates) > 1:
        digest = _sha1(file)
        candidates = [c for c in candidates if _sha1(c[1]) == digest]
    if len(candidates) != 1:
        raise WorkflowError(
            f"snakemake-job: {'no' if not candidates else len(candidates)} file(s) of "
            f"{workdir} match the rule's input {pattern!r} for {file.name}",
            hint="the job's input must be a file of the Snakefile's folder")
    return candidates[0][0]


def apply_pattern(pattern: str, wildcards: dict[str, str]) -> str:
    from snakemake.io import apply_wildcards
    return apply_wildcards(pattern, wildcards)


def _sha1(path: Path) -> str:
    import hashlib
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def run_snakemake(snakefile: Path, rule: str, wildcards: dict[str, str],
                  config: dict[str, Any], cores: int) -> int:
    target = f"{rule}:" + ",".join(f"{k}={v}" for k, v in sorted(wildcards.items()))
    argv = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile),
            "--directory", str(snakefile.parent), "--target-jobs", target,
            "--allowed-rules", rule, "--force", "--cores", str(max(1, cores)), "--nolock",
            "--notemp", "--rerun-triggers", "mtime", "--quiet", "all"]
    argv += _config_args(config)
    try:
        return subprocess.run(argv, check=False, timeout=SNAKEMAKE_TIMEOUT_S).returncode
    except KeyboardInterrupt:
        return 130


def note_temp_files(workdir: Path, files: list[str]) -> None:
    """Write down the ``temp()`` files this job made: the run deletes them when it is done."""
    folder = workdir / TEMP_NOTES
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{uuid.uuid4().hex}.json").write_text(json.dumps(files))


def delete_temp_outputs(workdir: Path) -> list[str]:
    """After a whole run: remove the ``temp()`` files its jobs wrote down, as ``snakemake``
    does once their last reader is done (a job cannot: the next reader is another process,
    so jobs run with ``--notemp``). Returns what was removed."""
    folder = workdir / TEMP_NOTES
    removed = []
    for note in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        for name in json.loads(note.read_text()):
            path = workdir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(name)
        note.unlink()
    return removed


def _config_args(config: dict[str, Any]) -> list[str]:
    if not config:
        return []
    return ["--config", *(f"{k}={json.dumps(v)}" for k, v in sorted(config.items()))]


def collect_outputs(workdir: Path, outputs: dict[str, list[str]], wildcards: dict[str, str],
                    directories: set[str]) -> dict[str, Any]:
    """Link each output of the job into the output folder (same relative path) and describe
    it as a CWL File/Directory; the working directory keeps its own copy for the next jobs."""
    here = Path.cwd()
    result: dict[str, Any] = {}
    for port, patterns in outputs.items():
        values = []
        for pattern in patterns:
            relative = apply_pattern(pattern, wildcards)
            source, target = workdir / relative, here / relative
            if not source.exists():
                raise WorkflowError(f"snakemake-job: the job did not write {relative}",
                                    where=str(workdir), hint="see the job's log above")
            _link(source, target)
            values.append({"class": "Directory" if port in directories else "File",
                           "location": relative})
        result[port] = values[0] if len(values) == 1 else values
    return result


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_hardlink_or_copy, dirs_exist_ok=True)
    else:
        _hardlink_or_copy(source, target)


def _hardlink_or_copy(source: Any, target: Any) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_output_object(value: dict[str, Any]) -> None:
    Path(OUTPUT_OBJECT).write_text(json.dumps(value, indent=1, sort_keys=True))
