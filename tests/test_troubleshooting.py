"""docs/troubleshooting.md cannot rot: every message it quotes is still raised by swfflow.

A quoted **Message** is the literal text of a raise in swfflow's code, with `…` where the code
puts a value (an f-string field); each literal piece must be in one source file. The printed
example above each message must show the same pieces.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "troubleshooting.md"
MESSAGE = re.compile(r"\*\*Message:\*\* ``(.+?)``")
SECTION = re.compile(r"^## (\d+)\. .*?(?=^## )", re.MULTILINE | re.DOTALL)
BLOCK = re.compile(r"^```\n(.*?)^```", re.MULTILINE | re.DOTALL)


def pieces(message: str) -> list[str]:
    return [p.strip() for p in message.split("…") if p.strip()]


def sources() -> dict[Path, str]:
    return {path: path.read_text() for path in (REPO / "swfflow").rglob("*.py")
            if "testing" not in path.parts}


def test_the_doc_lists_ten_errors_each_with_message_cause_and_fix():
    text = DOC.read_text()
    sections = SECTION.findall(text + "\n## end")
    assert sections == [str(n) for n in range(1, 11)]
    for body in SECTION.finditer(text + "\n## end"):
        section = body.group(0)
        for part in ("**Message:**", "**Cause:**", "**Fix:**", "swfflow: error:", "hint:"):
            assert part in section, (body.group(1), part)


def test_every_quoted_message_is_still_in_the_code():
    code = sources()
    messages = MESSAGE.findall(DOC.read_text())
    assert len(messages) >= 10
    missing = [m for m in messages
               if not any(all(p in text for p in pieces(m)) for text in code.values())]
    assert not missing, f"troubleshooting.md quotes messages swfflow no longer has: {missing}"


def test_each_example_shows_its_message():
    for body in SECTION.finditer(DOC.read_text() + "\n## end"):
        [example] = BLOCK.findall(body.group(0))
        [message] = MESSAGE.findall(body.group(0))
        for piece in pieces(message):
            assert piece in example, (body.group(1), piece)


def test_the_check_catches_a_message_that_is_gone():
    """The rot check can fail: a message no raise has is reported."""
    code = sources()
    gone = "no such workflow flie"
    assert not any(all(p in text for p in pieces(gone)) for text in code.values())
