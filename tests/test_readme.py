"""README as tests: every ```sh block of README.md runs, in order, in a temporary copy of this
checkout, as a newcomer would run it, and every command must exit 0.

Each block runs as one bash script (so `export`, `eval` and `&` carry from line to line, as in
one terminal); each foreground command is checked on its own and the first that fails is named.
The environment is a newcomer's: a fresh ``$HOME`` (so `~/.swfflow/services`, the run counter and
the Snakemake profile are this test's own), no PanDA or Rucio variables, this venv on ``PATH``.
`swfflow services up` starts this test's own ActiveMQ and Rucio (``SWFFLOW_SERVICES_DIR`` =
the fresh home's), stopped and purged at the end whatever happened.

A few commands cannot run as written inside a test; :data:`SPECIAL` says how each runs instead
and why, and every entry must match a README command (a stale entry fails the test).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.services, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)
COMMENT = re.compile(r"\s+#\s.*$")  # a trailing comment (README comments start with "# ")
BUDGET_S = 175.0  # the whole README, services included
PANDA_READY = "PanDA contract server on"


@dataclass(frozen=True)
class Special:
    pattern: str  # regex matched against the whole README command
    run_as: str | None  # bash to run instead (formatted with port=…); None: not run
    why: str


SPECIAL = [
    Special(r"bash scripts/test\.sh", None,
            "scripts/test.sh runs the whole suite, this test included: it would recurse; CI "
            "runs exactly that command"),
    Special(r"python3 -m venv \.venv && \.venv/bin/pip install -e \. && (?P<rest>.*)",
            "{rest}",
            "installing takes minutes: the copy's .venv is a link to this test's venv, which "
            "scripts/test.sh made with `pip install -e .` of this checkout"),
    Special(r"swfflow profile install && snakemake --profile panda",
            "swfflow profile install && ! snakemake --profile panda 2> snakemake.err"
            " && grep -q 'PANDA_URL_SSL and PANDA_URL are unset' snakemake.err",
            "at this point of the README no PanDA is configured (its PanDA section comes next): "
            "the profile must stop naming PANDA_URL_SSL, never ask CERN's production server; "
            "the run on PanDA itself is tests/test_snakemake_plugin.py"),
    Special(r"python -m swfflow\.testing\.panda_server --port 25080",
            "python -m swfflow.testing.panda_server --port {port} > panda.log 2>&1 & "
            "for _ in $(seq 150); do grep -q '" + PANDA_READY + "' panda.log && break; "
            "sleep 0.2; done; kill $!; grep -q '" + PANDA_READY + "' panda.log",
            "a server runs until stopped: it must answer (print its URL) within 30 s, then it "
            "is stopped; on a free port, since another test run may hold 25080"),
]


def readme_blocks(text: str) -> list[list[str]]:
    """The commands of each ```sh block: continuation lines joined, comments dropped."""
    blocks = []
    for body in BLOCK.findall(text):
        commands, current = [], ""
        for line in body.splitlines():
            current += line.rstrip()
            if current.endswith("\\"):
                current = current[:-1].rstrip() + " "
                continue
            command = COMMENT.sub("", current).strip()
            current = ""
            if command and not command.startswith("#"):
                commands.append(command)
        blocks.append(commands)
    return blocks


def as_run(command: str, used: set[int], port: int) -> str | None:
    for index, special in enumerate(SPECIAL):
        match = re.fullmatch(special.pattern, command)
        if match:
            used.add(index)
            return None if special.run_as is None else special.run_as.format(
                port=port, **match.groupdict())
    return command


def block_script(commands: list[str], used: set[int], port: int) -> str:
    """Bash running the commands in one shell, exiting at the first that fails, naming it."""
    lines = ['fail() { echo "README command failed with exit $1: $2" >&2; exit 1; }']
    for command in commands:
        run = as_run(command, used, port)
        if run is None:
            continue
        lines.append(f"echo \"[$SECONDS s]\" {shlex.quote('$ ' + command)} >&2")
        if run.endswith("&") and not run.endswith("&&"):
            lines.append(run)  # background: the README waits for it (`wait $!`)
        else:
            lines.append(f"{{ {run}\n}} || fail $? {shlex.quote(command)}")
    return "\n".join(lines) + "\n"


def newcomer_env(home: Path) -> dict[str, str]:
    keep = ("SWFFLOW_RUCIO_VENV", "SWFFLOW_PG")  # the shared server venv; where PostgreSQL is
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PANDA_URL", "PANDACACHE_URL", "RUCIO_", "SWFFLOW_"))
           or k.startswith(keep)}
    env.update(HOME=str(home), SWFFLOW_SERVICES_DIR=str(home / ".swfflow" / "services"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return env


def copy_checkout(target: Path) -> None:
    """This checkout's files as they are (tracked and new, not ignored): a fresh clone."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
            (target / name).chmod(source.stat().st_mode)
    (target / ".venv").symlink_to(Path(sys.prefix))


def run_block(script: Path, cwd: Path, env: dict[str, str], timeout: float
              ) -> subprocess.CompletedProcess:
    process = subprocess.Popen(["bash", str(script)], cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=max(timeout, 1.0))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        err += f"\n(timed out after {timeout:.0f} s)"
    finally:
        try:  # what a block left in the background (a bridge that never ended)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(script.name, process.returncode, out, err)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_state(copy: Path, env: dict[str, str], database: str) -> dict:
    shown = subprocess.run(["swfflow", "status", "--state", f"sqlite:///{database}", "--json"],
                           cwd=copy, env=env, capture_output=True, text=True, check=True)
    (run,) = json.loads(shown.stdout)["runs"]
    return run


def assert_demo_run_done(copy: Path, env: dict[str, str], database: str) -> None:
    """The run is done, every STF the simulator announced is attached, the merge produced."""
    announced = sum(json.loads(line)["msg_type"] == "stf_gen"
                    for line in (copy / "demo.jsonl").read_text().splitlines())
    run = run_state(copy, env, database)
    assert run["phase"] == "done" and run["namespace"] == "demo", run
    assert run["stf_announced"] == run["stf_attached"] == announced > 0, run
    assert {task["key"]: task["phase"] for task in run["tasks"]}["merge"] == "succeeded", run
    assert all(task["phase"] == "succeeded" for task in run["tasks"]), run


def test_readme_sh_blocks_run_as_written(tmp_path: Path) -> None:
    from swfflow import services

    copy, home = tmp_path / "swfflow", tmp_path / "home"
    copy.mkdir(), home.mkdir()
    copy_checkout(copy)
    env = newcomer_env(home)
    blocks = readme_blocks((copy / "README.md").read_text())
    assert len(blocks) >= 5 and sum(map(len, blocks)) >= 15, blocks
    used: set[int] = set()
    port = free_port()
    deadline = time.monotonic() + BUDGET_S
    try:
        for number, commands in enumerate(blocks, 1):
            script = tmp_path / f"block{number}.sh"
            script.write_text(block_script(commands, used, port))
            result = run_block(script, copy, env, deadline - time.monotonic())
            print(f"block {number}:\n{result.stderr}")  # per-command times, with -s
            assert result.returncode == 0, (
                f"README ```sh block {number}:\n{script.read_text()}\n--- stderr (end):\n"
                f"{result.stderr[-4000:]}\n--- stdout (end):\n{result.stdout[-2000:]}")
    finally:
        services.purge(env["SWFFLOW_SERVICES_DIR"])
    assert used == set(range(len(SPECIAL))), "a SPECIAL entry matches no README command"
    # the demo: the live bridge (over ActiveMQ and Rucio) and the replay both finished the run
    assert_demo_run_done(copy, env, "bridge.db")
    assert_demo_run_done(copy, env, "replay.db")
    merged = [json.loads(path.read_text()) for path in (copy / "bridge-work").rglob("merged.hist.json")]
    assert merged and all(m["n_stf"] == run_state(copy, env, "bridge.db")["stf_attached"]
                          for m in merged), merged
    assert (copy / "plan.json").is_file() and (copy / "calib.svg").read_text().startswith("<?xml")
