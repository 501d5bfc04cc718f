"""``swfflow run`` and ``swfflow status``: run a workflow on this machine, and show its state."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from swfflow.errors import SwfflowError


def run_for_cwltest(processfile: str, jobfile: str | None, basedir: str,
                    outdir: str) -> tuple[int, dict[str, Any] | None]:
    """The cwltest hook: run one conformance test in process; (exit code, output object)."""
    from swfflow.frontends.cwl import load_inputs
    from swfflow.runtime.batch import run_workflow_file

    def local(path: str) -> str:
        if path.startswith("file://"):
            from urllib.parse import unquote, urlparse
            return unquote(urlparse(path).path)
        return str(Path(basedir) / path) if not Path(path).is_absolute() else path

    logging.getLogger("cwltool").setLevel(logging.ERROR)
    try:
        inputs = load_inputs(local(jobfile)) if jobfile else {}
        return 0, run_workflow_file(local(processfile), inputs, outdir, no_container=True)
    except SwfflowError as exc:
        print(f"swfflow: error: {exc}", file=sys.stderr)
        return exc.exit_code, None
