"""One PanDA job of a compiled plan, on a worker node: what ``swfflow job`` does.

A task's ``jobParameters`` (:func:`swfflow.plan.jedi.job_parameters`) make runGen call
``swfflow job --task KEY [--values=B64] -i "f1,f2" [--secondaryN "g1,…"] --out port=NAME …``
in the job's working directory, where the pilot has staged the input files and the sandbox: the
workflow's folder with ``plan.json`` at its top (every relative path of the plan resolves
against it; a plan kept elsewhere resolves against the workflow it was compiled from).

The job:

1. finds the task in the plan and rebuilds its standalone CWL tool (the same
   :func:`~swfflow.runtime.leaf.standalone_tool` a local run uses, from the payload's ``tool``,
   ``tool_file`` and ``inherited`` requirements/hints); the inputs the driver computed at run
   time (a dynamic ``valueFrom``, an upstream ExpressionTool's output) come with ``--values``,
   base64url JSON that :func:`swfflow.plan.jedi.with_computed_values` added on submission;
2. binds the input files with :func:`~swfflow.backends.local_jobs.job_invocations` (the helper the
   local executor uses): ``-i`` is the job's chunk of the master dataset, ``--secondaryN`` the
   files of the N-th secondary dataset. A split port that takes one ``File`` gets one tool
   invocation per input file (scatter semantics); an array port gets the whole list;
3. runs each invocation with cwltool (:func:`~swfflow.runtime.tool.run_tool`);
4. puts each output port's result under the name JEDI gave it (``--out port=NAME``): one file
   is moved to ``NAME``; several files (a per-file scatter, an array output, secondary files)
   or none become a *bundle*: an uncompressed tar named ``NAME`` whose first member is
   :data:`swfflow.bundle.BUNDLE_MANIFEST`. JEDI registers exactly one file per port and job, so a bundle is
   the only way nothing is lost; an input that is a bundle is unpacked again before binding,
   so a consumer task sees the files, not the tar;
5. writes :data:`REPORT_NAME` (exit code, each output's adler32 and size) and
   :data:`LOG_NAME` (the tool log) into the working directory, where the pilot's log tarball
   picks them up.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swfflow import ir
from swfflow.backends.local_jobs import files_in, job_invocations, master_dataset
from swfflow.bundle import map_file_locations, placed_reference, unpack_bundle, write_bundle
from swfflow.checksum import adler32_file
from swfflow.errors import ConfigError, UnsupportedFeature
from swfflow.plan.jedi import VALUES_OPTION, driver_computed_ports
from swfflow.plan.model import Plan, TaskSpec
from swfflow.runtime.containers import ContainerPolicy
from swfflow.runtime.files import absolute_locations, describe_files, location_path
from swfflow.runtime.jobrun import clean_outputs
from swfflow.runtime.leaf import standalone_tool
from swfflow.runtime.tool import ToolResult, run_tool

PLAN_NAME = "plan.json"
PLAN_ENV = "SWFFLOW_PLAN"
REPORT_NAME = "swfflow-job.json"
LOG_NAME = "swfflow-job.log"
SCRATCH = ".swfflow-job"  # staging and tool output directories; removed when the job ends
_RUNNABLE_KINDS = ("cwl",)  # payload kinds a worker runs; the others never call `swfflow job`


@dataclass(frozen=True)
class JobRequest:
    """What the job's command line says (parsed, not yet checked against the plan)."""

    task: str
    plan: Path
    workdir: Path
    inputs: tuple[str, ...] = ()
    secondaries: dict[int, tuple[str, ...]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # port → JEDI file name
    no_container: bool = False
    values: dict[str, Any] = field(default_factory=dict)  # --values: inputs the driver computed


@dataclass(frozen=True)
class PlacedOutput:
    port: str
    name: str  # the file in the working directory (the JEDI name, or the tool's if not given)
    adler32: str
    size: int
    files: int  # how many tool files it holds (a bundle when not exactly one)
    bundle: bool


@dataclass
class JobReport:
    task: str
    step: str
    exit_code: int
    status: str  # "success" or the first failing invocation's cwltool status
    invocations: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[PlacedOutput] = field(default_factory=list)
    log_tail: str = ""
    # the CWL output object, files as placed (swfflow.bundle): what the driver reads back
    output_object: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the command line ---------------------------------------------------------------------
def find_plan(explicit: str | None, workdir: Path, environ: dict[str, str]) -> Path:
    """``--plan``, else ``$SWFFLOW_PLAN``, else ``plan.json`` in the working directory."""
    chosen = explicit or environ.get(PLAN_ENV) or str(workdir / PLAN_NAME)
    path = Path(chosen)
    path = path if path.is_absolute() else (workdir / path)
    if not path.is_file():
        raise ConfigError(f"plan file {path} not found", where="swfflow job",
                          hint=f"ship the compiled plan as {PLAN_NAME} in the job's sandbox, "
                               f"or give --plan / ${PLAN_ENV}")
    return path


def parse_file_list(text: str | None) -> tuple[str, ...]:
    """runGen's ``${IN/T}``: comma-separated file names (brackets and quotes tolerated)."""
    if not text:
        return ()
    names = (n.strip().strip("'\"") for n in text.strip().strip("[]").split(","))
    return tuple(n for n in names if n)


def parse_outputs(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--out port=NAME`` pairs."""
    out: dict[str, str] = {}
    for pair in pairs:
        port, sep, name = pair.partition("=")
        port, name = port.strip(), name.strip()
        if not sep or not port or not name or "/" in name:
            raise ConfigError(f"--out {pair!r} is not PORT=FILENAME", where="swfflow job",
                              hint="e.g. --out hist=swf.calib.100.reco.hist.42._000001.hist")
        if port in out:
            raise ConfigError(f"--out names port {port!r} twice", where="swfflow job")
        out[port] = name
    return out


def parse_secondaries(args: list[str]) -> dict[int, tuple[str, ...]]:
    """``--secondaryN "g1,g2"`` (or ``--secondaryN=…``) from the extra arguments."""
    found: dict[int, tuple[str, ...]] = {}
    items = list(args)
    while items:
        arg = items.pop(0)
        flag, sep, value = arg.partition("=")
        index = flag.removeprefix("--secondary")
        if not flag.startswith("--secondary") or not index.isdigit():
            raise ConfigError(f"unexpected argument {arg!r}", where="swfflow job",
                              hint="see `swfflow job --help`")
        if not sep:
            if not items:
                raise ConfigError(f"{flag} needs a comma-separated file list", where="swfflow job")
            value = items.pop(0)
        found[int(index)] = parse_file_list(value)
    return found


# --- the plan -----------------------------------------------------------------------------
def load_task(plan_path: Path, key: str) -> tuple[Plan, TaskSpec]:
    try:
        plan = Plan.from_json(plan_path.read_text())
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"cannot read plan {plan_path}: {exc}", where="swfflow job",
                          hint="write it with `swfflow compile WORKFLOW -o plan.json`") from None
    try:
        task = plan.task(key)
    except KeyError:
        known = ", ".join(t.key for t in plan.tasks if t.payload.get("kind") in _RUNNABLE_KINDS)
        raise ConfigError(f"no task {key!r} in plan {plan_path}", where="swfflow job",
                          hint=f"tasks a job can run: {known}") from None
    kind = task.payload.get("kind")
    if kind not in _RUNNABLE_KINDS:
        raise UnsupportedFeature(f"task {key!r} is of kind {kind!r}, which no worker job runs",
                                 where="swfflow job",
                                 hint="expression steps run in the driver; pchain steps (prun, "
                                      "phpo, junction) run their own payload")
    return plan, task


def workflow_folder(plan_path: Path, plan: Plan, task: TaskSpec, workdir: Path) -> Path:
    """Where the plan's relative paths resolve: the folder the task's tool file lies in as it
    lay next to the workflow. A pilot's sandbox has plan.json at the workflow's top, so the
    plan's own folder comes first; else the workflow the plan was compiled from
    (``plan.source``, relative to the folder it was compiled in, which is not recorded: tried
    against the working directory, the plan's folder and the folders above it)."""
    tool_file = task.payload.get("tool_file") or ""
    here = plan_path.parent.resolve()
    candidates = [here, *_source_folders(plan.source, here, workdir)]
    for folder in candidates:
        if not tool_file or "://" in tool_file or (folder / tool_file).is_file():
            return folder
    raise ConfigError(f"task {task.key!r}: its tool {tool_file} is neither next to the plan "
                      f"{plan_path} nor next to the workflow it was compiled from "
                      f"({plan.source or 'not recorded'})", where="swfflow job",
                      hint="put plan.json at the top of the workflow's folder (the job's "
                           "sandbox), or run from the folder the plan was compiled in")


def _source_folders(source: str, here: Path, workdir: Path) -> list[Path]:
    if not source:
        return []
    named = Path(source)
    bases = [Path("/")] if named.is_absolute() else [workdir.resolve(), here, *here.parents]
    return [(base / named).resolve().parent for base in bases if (base / named).is_file()]


def runnable_tool(task: TaskSpec, sandbox: Path) -> dict[str, Any]:
    """The task's CWL tool, self-contained, with relative references resolving in the sandbox
    as they did next to the workflow."""
    payload = task.payload
    tool_file = payload.get("tool_file") or ""
    uri = tool_file if "://" in tool_file else (sandbox / tool_file).resolve().as_uri()
    inherited = payload.get("inherited") or {}
    step = ir.Step(name=task.key.replace("/", "_"), kind=ir.StepKind.COMMAND,
                   tool=payload["tool"], tool_uri=uri,
                   requirements=tuple(inherited.get("requirements") or ()),
                   hints=tuple(inherited.get("hints") or ()))
    return standalone_tool(step)


def secondary_datasets(task: TaskSpec) -> dict[int, str]:
    """``--secondaryN`` → the dataset JEDI fills it from (the task's own jobParameters)."""
    found = {}
    for item in task.params.get("jobParameters") or []:
        flag = str(item.get("value", "")).split(" ", 1)[0]
        index = flag.removeprefix("--secondary")
        if item.get("param_type") == "input" and flag != index and index.isdigit():
            found[int(index)] = item["dataset"]
    return found


# --- files --------------------------------------------------------------------------------
def staged_files(names: tuple[str, ...], workdir: Path, unpack: Path) -> list[dict[str, Any]]:
    """CWL File values for the staged inputs (a URL stays a URL); bundles are unpacked."""
    values: list[dict[str, Any]] = []
    for name in names:
        if "://" in name:
            values.append({"class": "File", "location": name})
            continue
        path = Path(name) if Path(name).is_absolute() else workdir / name
        if not path.is_file():
            raise ConfigError(f"input file {name} is not in the working directory {workdir}",
                              where="swfflow job",
                              hint="the pilot stages -i files into the job's directory")
        members = unpack_bundle(path, unpack / f"{len(values):04d}")
        values += [describe_files({"class": "File", "location": p.resolve().as_uri()})
                   for p in (members if members is not None else [path])]
    return values


def output_paths(value: Any) -> list[Path]:
    """The local files of a CWL output value, secondary files after their primary."""
    paths = []
    for f in files_in(value):
        paths.append(location_path(f["location"]))
        paths += [location_path(s["location"]) for s in f.get("secondaryFiles") or []
                  if s.get("class") == "File"]
    return paths


def place_output(port: str, paths: list[Path], name: str | None, workdir: Path,
                 references: dict[str, str] | None = None) -> PlacedOutput:
    """Put a port's files under the name JEDI gave it, always as a bundle: JEDI's name is not
    the tool's, and a later tool may depend on the name (``$(inputs.f.nameroot)``, a glob):
    the manifest carries it to the consumer, as cwltool would have staged it. Without a name
    (a run by hand) a single file keeps the tool's name. ``references`` learns, for each tool
    file, where it went (:func:`swfflow.bundle.placed_reference`)."""
    bundle = name is not None or len(paths) != 1
    if name is None:
        name = paths[0].name if len(paths) == 1 else f"{port}.bundle.tar"
    target = workdir / name
    if bundle:
        members = write_bundle(paths, target)
        placed = {str(p): placed_reference(name, m) for p, m in zip(paths, members)}
    else:
        shutil.move(paths[0], target)
        placed = {str(paths[0]): placed_reference(name)}
    if references is not None:
        references.update(placed)
    return PlacedOutput(port=port, name=name, adler32=adler32_file(target),
                        size=target.stat().st_size, files=len(paths), bundle=bundle)


# --- the job ------------------------------------------------------------------------------
def job_objects(task: TaskSpec, tool: dict[str, Any], sandbox: Path,
                master_files: list[dict[str, Any]],
                dataset_files: dict[str, list[dict[str, Any]]],
                values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One CWL job object per tool invocation: the plan's constants, then the values the
    driver computed at run time (``--values``), then the staged files."""
    computed = driver_computed_ports(task.inputs)
    foreign = sorted(set(values or {}) - set(computed))
    if foreign:
        raise ConfigError(f"task {task.key!r}: {VALUES_OPTION} names port(s) "
                          f"{', '.join(foreign)}, which the driver does not compute",
                          where="swfflow job",
                          hint=f"ports computed at run time: {', '.join(computed) or 'none'}")
    spec = asdict(task)
    job = {**absolute_locations(spec["payload"].get("job") or {}, sandbox), **(values or {})}
    spec["payload"] = {**spec["payload"], "tool": tool, "job": job}
    missing = [port for port in computed if port not in job]
    if missing:
        raise ConfigError(
            f"task {task.key!r}: input(s) {', '.join(missing)} are computed by the driver at "
            f"run time and were not given with {VALUES_OPTION}", where="swfflow job",
            hint="run the job with the task's jobParameters as the driver submitted them "
                 f"(`swfflow submit` adds {VALUES_OPTION}=...), or run the workflow with "
                 "`swfflow run`")
    return job_invocations(spec, master_files, lambda did: dataset_files.get(did, []))


def run_job(request: JobRequest) -> JobReport:
    plan, task = load_task(request.plan, request.task)
    unknown = sorted(set(request.outputs) - set(task.outputs))
    if unknown:
        raise ConfigError(f"--out names port(s) {', '.join(unknown)} that task {task.key!r} "
                          f"does not have", where="swfflow job",
                          hint=f"its output ports: {', '.join(sorted(task.outputs)) or 'none'}")
    master = master_dataset(asdict(task))
    if master is not None and not request.inputs:
        raise ConfigError(f"task {task.key!r} reads dataset {master} but no -i files were given",
                          where="swfflow job", hint='-i "file1,file2" (runGen: -i "${IN/T}")')
    if master is None and request.inputs:
        raise ConfigError(f"task {task.key!r} has no input dataset but -i was given",
                          where="swfflow job")
    secondary = secondary_datasets(task)
    extra = sorted(set(request.secondaries) - set(secondary))
    if extra:
        raise ConfigError(f"task {task.key!r} has no --secondary{extra[0]}", where="swfflow job")

    workdir = request.workdir.resolve()
    sandbox = workflow_folder(request.plan, plan, task, workdir)
    scratch = workdir / SCRATCH
    try:
        master_files = staged_files(request.inputs, workdir, scratch / "in" / "master")
        dataset_files = {secondary[i]: staged_files(names, workdir, scratch / "in" / f"s{i}")
                         for i, names in request.secondaries.items()}
        if master is not None:
            dataset_files[master] = master_files
        tool = runnable_tool(task, sandbox)
        jobs = job_objects(task, tool, sandbox, master_files, dataset_files, request.values)
        report = _run_invocations(task, tool, jobs, request, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (workdir / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True)
                                       + "\n")
    return report


def _run_invocations(task: TaskSpec, tool: dict[str, Any], jobs: list[dict[str, Any]],
                     request: JobRequest, scratch: Path) -> JobReport:
    workdir = request.workdir.resolve()
    policy = ContainerPolicy(forbid=request.no_container)
    results: list[ToolResult] = []
    report = JobReport(task=task.key, step=task.step, exit_code=0, status="success")
    with (workdir / LOG_NAME).open("w") as log:
        for number, job in enumerate(jobs):
            result = run_tool(tool, job, scratch / "out" / f"{number:04d}", policy=policy,
                              workdir=scratch, where=task.step)
            log.write(f"--- invocation {number}: {' '.join(result.command)}\n{result.log}\n")
            report.invocations.append({"command": result.command, "exit_code": result.exit_code,
                                       "container": result.container, "status": result.status})
            if not result.ok:
                # a tool that exited 0 but broke its output contract still failed the job
                report.exit_code = result.exit_code or 1
                report.status, report.log_tail = result.status, result.log_tail(20)
                return report
            results.append(result)
    outputs = [clean_outputs(r.outputs or {}) for r in results]
    references: dict[str, str] = {}
    for port in sorted(task.outputs):
        paths = [p for out in outputs for p in output_paths(out.get(port))]
        report.outputs.append(place_output(port, paths, request.outputs.get(port), workdir,
                                           references))
    report.output_object = output_object(outputs, references)
    return report


def output_object(outputs: list[dict[str, Any]], references: dict[str, str]) -> dict[str, Any]:
    """The job's CWL output object (one invocation's, or per port the list over them, as a
    local job's), each file named by where the job placed it."""
    combined = outputs[0] if len(outputs) == 1 else {
        port: [out.get(port) for out in outputs] for port in sorted({p for o in outputs for p in o})}
    return map_file_locations(combined, lambda location: references.get(
        str(location_path(location))))
