"""Mermaid and dot pictures of the step graph."""

from __future__ import annotations

import shutil
import subprocess

from swfflow.plan.draw import to_dot, to_mermaid
from tests.test_planner import stf_chain


def test_mermaid_shows_steps_stream_input_and_edge_modes():
    text = to_mermaid(stf_chain())
    assert text.startswith("flowchart TD\n")
    assert 'n_in_stf(["stf (stream)"])' in text
    assert "n_in_stf -->|stream| n_reco" in text
    assert "n_reco -->|stream| n_qa" in text
    assert "n_reco -.->|complete| n_merge" in text
    assert 'n_qa["qa (scatter, when)"]' in text


def test_dot_renders_with_graphviz():
    text = to_dot(stf_chain())
    assert 'n_reco -> n_merge [label="complete", style=dashed];' in text
    dot = shutil.which("dot")
    assert dot, "graphviz is needed (scripts/test.sh installs it)"
    svg = subprocess.run([dot, "-Tsvg"], input=text.encode(), capture_output=True, check=True)
    assert b"<svg" in svg.stdout and b"reco" in svg.stdout
