"""Where the official CWL v1.2 conformance suite is: ``$SWFFLOW_CWL_CONFORMANCE``, else
``../shared/cwl-v1.2`` next to this checkout (what ``cwl-v1.2.cwltest.yaml`` imports).

``python tests/conformance/suite.py`` prints the suite's folder (exit 0), or how to get it
(exit 3); ``scripts/test.sh`` runs the conformance step only when it is there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "SWFFLOW_CWL_CONFORMANCE"
DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "cwl-v1.2"
DOCUMENT = "conformance_tests.yaml"  # the suite's own cwltest document
HOW_TO_GET = (f"get it with `git clone https://github.com/common-workflow-language/cwl-v1.2 "
              f"{DEFAULT}`, or set {ENV}=<folder of a cwl-v1.2 checkout>")


def suite_dir() -> Path | None:
    """The suite's folder, or None when it is not where it is looked for."""
    folder = Path(os.environ.get(ENV) or DEFAULT)
    return folder.resolve() if (folder / DOCUMENT).is_file() else None


def missing_message() -> str:
    where = os.environ.get(ENV) or DEFAULT
    return f"no CWL v1.2 conformance suite at {where} (no {DOCUMENT}); {HOW_TO_GET}"


if __name__ == "__main__":
    found = suite_dir()
    if found is None:
        print(missing_message())
        sys.exit(3)
    print(found)
