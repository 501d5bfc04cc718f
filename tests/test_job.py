"""`swfflow job`: a compiled task's jobParameters run on a "worker node".

Each job gets its own working directory holding what a PanDA pilot gives it: the sandbox (the
workflow's folder with plan.json at its top) and the staged input files. The expected outputs
come from running the example's tool kit by hand (python3 calibkit.py …), an independent path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from swfflow.checksum import adler32_file
from swfflow.errors import ConfigError
from swfflow.bundle import BUNDLE_MANIFEST, bundle_members, unpack_bundle
from swfflow.worker import (
    REPORT_NAME,
    parse_file_list,
    parse_outputs,
    parse_secondaries,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
KIT = EXAMPLES / "tools" / "bin" / "calibkit.py"
STFS = sorted((EXAMPLES / "data").glob("*.stf"))
HIST = "swf.calib.100.reconstruct.hist.4711._{:06d}.hist"
MERGED = "swf.calib.100.merge.merged.4712._000001.merged"


def swfflow(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swfflow.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, check=False)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """The workflow folder as a pilot unpacks it, with the compiled plan at its top."""
    root = tmp_path_factory.mktemp("sandbox")
    shutil.copy(EXAMPLES / "calib.cwl", root)
    shutil.copytree(EXAMPLES / "tools", root / "tools")
    done = swfflow("compile", "calib.cwl", "-o", "plan.json", cwd=root)
    assert done.returncode == 0, done.stderr
    assert str(REPO) not in (root / "plan.json").read_text()
    return root


def job_dir(sandbox: Path, parent: Path, name: str, staged: list[Path]) -> Path:
    """A job's working directory: sandbox contents plus the staged input files."""
    work = parent / name
    shutil.copytree(sandbox, work)
    for path in staged:
        shutil.copy(path, work / path.name)
    return work


def by_hand(parent: Path, *args: str) -> Path:
    """Run the tool kit directly (the reference the job's outputs must equal)."""
    parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["python3", str(KIT), *args], cwd=parent, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    return parent


def report_of(work: Path) -> dict:
    return json.loads((work / REPORT_NAME).read_text())


def test_reconstruct_then_merge_under_jedi_names(sandbox, tmp_path):
    hists = []
    for seq, stf in enumerate(STFS[:2], start=1):
        work = job_dir(sandbox, tmp_path, f"reco{seq}", [stf])
        done = swfflow("job", "--task", "reconstruct", "-i", stf.name,
                       "--out", f"hist={HIST.format(seq)}", cwd=work)
        assert done.returncode == 0, done.stderr
        produced = work / HIST.format(seq)
        expected = by_hand(tmp_path / f"hand{seq}", "reco", str(stf)) / \
            stf.with_suffix(".hist.json").name
        # JEDI's name outside, the tool's inside: the next tool sees the name it would see
        [member] = unpack_bundle(produced, tmp_path / f"unpacked{seq}")
        assert member.name == expected.name
        assert member.read_bytes() == expected.read_bytes()
        [out] = report_of(work)["outputs"]
        assert out == {"port": "hist", "name": produced.name, "adler32": adler32_file(produced),
                       "size": produced.stat().st_size, "files": 1, "bundle": True}
        assert report_of(work)["output_object"]["hist"]["location"] == \
            f"{produced.name}#{expected.name}"
        assert report_of(work)["exit_code"] == 0
        assert not (work / ".swfflow-job").exists()  # scratch gone: the log tarball stays small
        hists.append(produced)

    work = job_dir(sandbox, tmp_path, "merge", hists)
    done = swfflow("job", "--task", "merge", "-i", ",".join(h.name for h in hists),
                   "--out", f"merged={MERGED}", "--json", cwd=work)
    assert done.returncode == 0, done.stderr
    merged = work / MERGED
    originals = [unpack_bundle(h, tmp_path / f"orig{i}")[0] for i, h in enumerate(hists)]
    expected = by_hand(tmp_path / "hand-merge", "merge", *map(str, originals)) / \
        "merged.hist.json"
    [merged] = unpack_bundle(merged, tmp_path / "merged")
    assert merged.read_bytes() == expected.read_bytes()
    assert json.loads(merged.read_text())["n_stf"] == 2
    report = json.loads(done.stdout)
    assert report == report_of(work)
    assert report["outputs"][0]["adler32"] == adler32_file(work / MERGED)
    assert report["invocations"][0]["command"][-3:-2] == ["merge"]


def test_several_files_per_job_run_once_each_and_bundle_for_the_consumer(sandbox, tmp_path):
    """filesPerJob > 1 on a scatter over one File: one invocation per file, the port's files
    travel as one bundle, and the merge job unpacks it."""
    work = job_dir(sandbox, tmp_path, "reco", STFS[:3])
    done = swfflow("job", "--task", "reconstruct", "-i", ",".join(s.name for s in STFS[:3]),
                   "--out", f"hist={HIST.format(1)}", cwd=work)
    assert done.returncode == 0, done.stderr
    report = report_of(work)
    assert len(report["invocations"]) == 3
    bundle = work / HIST.format(1)
    assert report["outputs"][0]["bundle"] and report["outputs"][0]["files"] == 3
    with tarfile.open(bundle) as tar:
        assert tar.getnames()[0] == BUNDLE_MANIFEST
        manifest = json.load(tar.extractfile(BUNDLE_MANIFEST))
        for entry in manifest["files"]:
            expected = by_hand(tmp_path / "hand" / entry["name"], "reco",
                               str(EXAMPLES / "data" / entry["name"].replace(".hist.json",
                                                                             ".stf")))
            data = tar.extractfile(entry["name"]).read()
            assert data == (expected / entry["name"]).read_bytes()
            assert entry["size"] == len(data)
    assert [e["name"] for e in manifest["files"]] == \
        [s.with_suffix(".hist.json").name for s in STFS[:3]]

    merge = job_dir(sandbox, tmp_path, "merge", [bundle])
    done = swfflow("job", "--task", "merge", "-i", bundle.name, "--out", f"merged={MERGED}",
                   cwd=merge)
    assert done.returncode == 0, done.stderr
    [merged] = unpack_bundle(merge / MERGED, tmp_path / "merged")
    assert json.loads(merged.read_text())["n_stf"] == 3


def test_plan_from_environment_and_tool_failure_exit_code(sandbox, tmp_path):
    work = tmp_path / "bare"
    work.mkdir()
    (work / "broken.stf").write_text("not an stf\n")
    env = {**__import__("os").environ, "SWFFLOW_PLAN": str(sandbox / "plan.json")}
    done = swfflow("job", "--task", "reconstruct", "-i", "broken.stf",
                   "--out", f"hist={HIST.format(1)}", cwd=work, env=env)
    assert done.returncode == 1, done.stderr  # calibkit's sys.exit(message) status
    assert "not an STF file" in done.stderr and "failed" in done.stderr
    assert "Traceback" not in done.stderr
    assert report_of(work)["exit_code"] == 1 and report_of(work)["outputs"] == []
    assert not (work / HIST.format(1)).exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--task", "nope", "-i", STFS[0].name], "no task 'nope'"),
    (["--task", "reconstruct", "-i", STFS[0].name, "--out", "hist"], "is not PORT=FILENAME"),
    (["--task", "reconstruct", "-i", STFS[0].name, "--out", "bogus=x"], "port(s) bogus"),
    (["--task", "reconstruct"], "no -i files were given"),
    (["--task", "reconstruct", "-i", "missing.stf"], "input file missing.stf is not"),
    (["--task", "merge", "-i", "a", "--secondary3", "b"], "no --secondary3"),
    (["--task", "reconstruct", "-i", STFS[0].name, "--plan", "nowhere.json"],
     "nowhere.json not found"),
])
def test_bad_input_is_one_clear_error(sandbox, tmp_path, args, message):
    work = job_dir(sandbox, tmp_path, "w", [STFS[0]])
    done = swfflow("job", *args, cwd=work)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_missing_plan_names_the_fix(tmp_path):
    done = swfflow("job", "--task", "reconstruct", cwd=tmp_path,
                   env={k: v for k, v in __import__("os").environ.items()
                        if k != "SWFFLOW_PLAN"})
    assert done.returncode == 2 and "plan.json" in done.stderr and "--plan" in done.stderr


@pytest.mark.parametrize(("text", "names"), [
    ("a.stf,b.stf", ("a.stf", "b.stf")),
    (" a.stf , b.stf ,", ("a.stf", "b.stf")),
    ("['a.stf', 'b.stf']", ("a.stf", "b.stf")),
    ("root://host//x/a.stf", ("root://host//x/a.stf",)),
    ("", ()),
])
def test_file_lists_as_rungen_gives_them(text, names):
    assert parse_file_list(text) == names


def test_output_and_secondary_options():
    assert parse_outputs(["hist=a.1.hist", "qa=b=c"]) == {"hist": "a.1.hist", "qa": "b=c"}
    for bad in (["=x"], ["p="], ["p=a/b"], ["p=a", "p=b"]):
        with pytest.raises(ConfigError):
            parse_outputs(bad)
    assert parse_secondaries(["--secondary0", "a,b", "--secondary1=c"]) == \
        {0: ("a", "b"), 1: ("c",)}
    with pytest.raises(ConfigError):
        parse_secondaries(["--what", "x"])


def test_secondary_datasets_feed_the_gather_port(sandbox, tmp_path):
    """validate/checksum gathers three datasets: the master through -i, the others through
    --secondary0/1 as its jobParameters name them."""
    files = []
    for i, text in enumerate(("constants", "feedback", "merged")):
        path = tmp_path / f"swf.calib.100.{text}.9._000001.{text}"
        path.write_text(json.dumps({"kind": text, "i": i}))
        files.append(path)
    work = job_dir(sandbox, tmp_path, "checksum", files)
    out = "swf.calib.100.validate.checksum.checksums.9._000001.checksums"
    done = swfflow("job", "--task", "validate/checksum", "-i", files[0].name,
                   "--secondary0", files[1].name, f"--secondary1={files[2].name}",
                   "--out", f"checksums={out}", cwd=work)
    assert done.returncode == 0, done.stderr
    [checksums] = unpack_bundle(work / out, tmp_path / "checksums")
    lines = checksums.read_text().splitlines()
    assert sorted(lines) == sorted(f"{adler32_file(f)}  {f.name}" for f in files)


@pytest.fixture(scope="module")
def plan_elsewhere(tmp_path_factory) -> Path:
    """A checkout (``wf/`` holds the workflow) whose plan was compiled into ``other/``, not
    into the workflow's folder: the plan names its source, ``wf/calib.cwl``."""
    base = tmp_path_factory.mktemp("checkout")
    (base / "wf").mkdir()
    shutil.copy(EXAMPLES / "calib.cwl", base / "wf")
    shutil.copytree(EXAMPLES / "tools", base / "wf" / "tools")
    done = swfflow("compile", "wf/calib.cwl", "-o", "other/plan.json", cwd=base)
    assert done.returncode == 0, done.stderr
    assert json.loads((base / "other" / "plan.json").read_text())["source"] == "wf/calib.cwl"
    return base


@pytest.mark.parametrize("third", ["inside", "outside"])
def test_plan_outside_the_workflow_folder_resolves_against_its_source(plan_elsewhere, tmp_path,
                                                                      third):
    """`swfflow job --plan other/plan.json` from a third folder (below the checkout, or
    anywhere else) finds the tool next to the workflow the plan was compiled from."""
    work = plan_elsewhere / "third" if third == "inside" else tmp_path / "third"
    work.mkdir()
    shutil.copy(STFS[0], work)
    plan = "../other/plan.json" if third == "inside" else str(plan_elsewhere / "other/plan.json")
    done = swfflow("job", "--plan", plan, "--task", "reconstruct", "-i", STFS[0].name,
                   "--out", f"hist={HIST.format(1)}", cwd=work)
    assert done.returncode == 0, done.stderr
    expected = by_hand(tmp_path / "hand", "reco", str(STFS[0])) / \
        STFS[0].with_suffix(".hist.json").name
    [hist] = bundle_members(work / HIST.format(1))
    assert hist.read_bytes() == expected.read_bytes()
    assert not (plan_elsewhere / "wf" / HIST.format(1)).exists()  # outputs stay in the job dir


def test_plan_far_from_its_workflow_is_one_clear_error(plan_elsewhere, tmp_path):
    lonely = tmp_path / "lonely" / "plan.json"
    lonely.parent.mkdir()
    shutil.copy(plan_elsewhere / "other" / "plan.json", lonely)
    shutil.copy(STFS[0], tmp_path)
    done = swfflow("job", "--plan", str(lonely), "--task", "reconstruct", "-i", STFS[0].name,
                   cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "wf/calib.cwl" in done.stderr and "top of the workflow's folder" in done.stderr
    assert "Traceback" not in done.stderr
