"""A newcomer's first minute: `git clone` + the README's first command, timed.

The first command (the first shell block of README.md: a venv, `pip install -e .`, then
`swfflow compile examples/calib.cwl`) must print a plan and a "next:" line in under 60 s on a
fresh machine, pip included (issue 19). Measured in the same run, the baseline is what no
project can beat: a fresh venv and `pip install` of the same dependencies (pyproject.toml's
`dependencies`) alone. Each measurement gets its own empty pip cache (a fresh machine), unless
--warm-cache.

    python bench/first_command.py [--rounds 1] [--warm-cache] [--keep]

Prints the clone, first-command and baseline times, the goal check and first command /
baseline (the share of the first minute that is swfflow's own: install + compile).
"""

from __future__ import annotations

import argparse
import os
import re
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


def one_round(root: Path, warm: bool, timeout_s: float) -> dict[str, float]:
    clone = root / "swfflow"
    clone_s, _ = timed(["git", "clone", "--quiet", str(REPO), str(clone)], root,
                       dict(os.environ), timeout_s)
    command = first_command(clone / "README.md")
    first_s, done = timed(["bash", "-c", command], clone, pip_env(root, "first", warm),
                          timeout_s)
    if "next:" not in done.stdout or "reconstruct" not in done.stdout:
        sys.exit(f"the first command printed no plan and next step:\n{done.stdout[-2000:]}")
    compile_s, _ = timed([str(clone / ".venv/bin/swfflow"), "compile", "examples/calib.cwl"],
                         clone, pip_env(root, "first", warm), timeout_s)
    base = root / "baseline"
    env = pip_env(root, "baseline", warm)
    venv_s, _ = timed([sys.executable, "-m", "venv", str(base)], root, env, timeout_s)
    pip_s, _ = timed([str(base / "bin/pip"), "install", "-q", *dependencies(clone / "pyproject.toml")],
                     root, env, timeout_s)
    return {"clone": clone_s, "first": first_s, "compile": compile_s, "baseline": venv_s + pip_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
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
            t = one_round(root, args.warm_cache, args.timeout)
        finally:
            if not args.keep:
                subprocess.run(["rm", "-rf", str(root)], check=False)
        total = t["clone"] + t["first"]
        verdict = "met" if total < GOAL_S else "NOT met"
        print(f"round {number}: git clone {t['clone']:.1f} s + first command {t['first']:.1f} s "
              f"= {total:.1f} s (goal < {GOAL_S:.0f} s: {verdict}); of which compile "
              f"{t['compile']:.1f} s (warm, run again)")
        print(f"round {number}: baseline (venv + pip install of the dependencies alone) "
              f"{t['baseline']:.1f} s; first command / baseline = {t['first'] / t['baseline']:.2f}x")


if __name__ == "__main__":
    main()
