"""A newcomer's first minute: `git clone` + the README's first command, timed.

The first command (the first shell block of README.md: a venv, `pip install -e .`, then
`swfflow compile examples/calib.cwl`) must print a plan and a "next:" line in under 60 s on a
fresh machine, pip included (issue 19). Measured in the same run, the baseline is what no
project can beat: a fresh venv and `pip install` of the same dependencies (pyproject.toml's
`dependencies`) alone. Each measurement gets its own empty pip cache (a fresh machine), unless
--warm-cache.

    python bench/first_command.py [--rounds 2] [--warm-cache] [--keep]

Prints the clone, first-command and baseline times, the goal check and first command /
baseline (the share of the first minute that is swfflow's own: install + compile).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 60.0
FIRST_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def first_command(readme: Path) -> str:
    """The README's first shell block (its first command, as a user copies it)."""
    found = FIRST_BLOCK.search(readme.read_text())
    if found is None:
        sys.exit(f"{readme}: no ```sh block found")
    return found.group(1).strip()


def dependencies(pyproject: Path) -> list[str]:
    return tomllib.loads(pyproject.read_text())["project"]["dependencies"]


def timed(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float
          ) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(argv)[:200]}\n{done.stderr[-3000:]}")
    return elapsed, done


def pip_env(root: Path, name: str, warm: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    # the venv's swfflow must not be found through a venv this script runs in
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if Path(p).resolve() != Path(sys.executable).parent.resolve())
    if not warm:
        env["PIP_CACHE_DIR"] = str(root / f"pip-cache-{name}")
    return env


def run_first_command(root: Path, warm: bool, timeout_s: float) -> dict[str, float]:
    clone = root / "swfflow"
    clone_s, _ = timed(["git", "clone", "--quiet", str(REPO), str(clone)], root,
                       dict(os.environ), timeout_s)
    env = pip_env(root, "first", warm)
    # the parts of the `a && b && c` line one by one (the same as the line: no state is
    # shared), so the report shows where the time goes; the last one prints the plan
    parts = [part.strip() for part in first_command(clone / "README.md").split(" && ")]
    times = {}
    for part in parts:
        times[part], done = timed(["bash", "-c", part], clone, env, timeout_s)
    if "next:" not in done.stdout or "reconstruct" not in done.stdout:
        sys.exit(f"the first command printed no plan and next step:\n{done.stdout[-2000:]}")
    return {"clone": clone_s, "first": sum(times.values()), "parts": times}


def run_baseline(root: Path, warm: bool, timeout_s: float) -> float:
    base, env = root / "baseline", pip_env(root, "baseline", warm)
    venv_s, _ = timed([sys.executable, "-m", "venv", str(base)], root, env, timeout_s)
    pip_s, _ = timed([str(base / "bin/pip"), "install", "-q", *dependencies(REPO / "pyproject.toml")],
                     root, env, timeout_s)
    return venv_s + pip_s


def one_round(root: Path, warm: bool, timeout_s: float, baseline_first: bool) -> dict:
    """Both measurements; which goes first alternates between rounds (the second one finds
    the index's files in the OS page cache)."""
    if baseline_first:
        baseline = run_baseline(root, warm, timeout_s)
        return {**run_first_command(root, warm, timeout_s), "baseline": baseline}
    first = run_first_command(root, warm, timeout_s)
    return {**first, "baseline": run_baseline(root, warm, timeout_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds; even ones measure the baseline first")
    parser.add_argument("--warm-cache", action="store_true",
                        help="use pip's normal cache (not a fresh machine)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds any one step may take")
    args = parser.parse_args()
    print(f"first command: {first_command(REPO / 'README.md')}")
    print(f"baseline: fresh venv + pip install of {len(dependencies(REPO / 'pyproject.toml'))} "
          f"dependencies; pip cache: {'warm' if args.warm_cache else 'empty per measurement'}")
    for number in range(1, args.rounds + 1):
        root = Path(tempfile.mkdtemp(prefix="swfflow-first-"))
        try:
            t = one_round(root, args.warm_cache, args.timeout, baseline_first=number % 2 == 0)
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        total = t["clone"] + t["first"]
        verdict = "met" if total < GOAL_S else "NOT met"
        order = "baseline first" if number % 2 == 0 else "first command first"
        print(f"round {number} ({order}): git clone {t['clone']:.1f} s + first command "
              f"{t['first']:.1f} s = {total:.1f} s (goal < {GOAL_S:.0f} s: {verdict})")
        for part, seconds in t["parts"].items():
            print(f"    {seconds:6.1f} s  {part}")
        print(f"round {number}: baseline (venv + pip install of the dependencies alone) "
              f"{t['baseline']:.1f} s; first command / baseline = {t['first'] / t['baseline']:.2f}x")


if __name__ == "__main__":
    main()
