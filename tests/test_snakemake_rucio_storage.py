"""snakemake-storage-plugin-rucio 0.6.0 against our Rucio 41 (issue 17, part 3, first step):
Snakemake writes a rule's output into Rucio (upload to an RSE, attached to a dataset) and a
second rule reads it back (download), with no shared folder between them but Rucio's RSE.

What the plugin needs, found here (no wrapper needed so far): ``upload_rse`` and
``upload_dataset`` are required for outputs; the dataset is a NAME in the output's own scope
(``scope:name`` is refused by Rucio as InvalidObject) and must exist; without
``no_path_rewriting`` the plugin quotes DID names (``-`` becomes ``--``), so swfflow's names
would not match."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent

SNAKEFILE = '''
rule all:
    input: "copy.txt"

rule make:
    output: storage.rucio("rucio://user.swf/smk.{run}.made.txt")
    shell: "echo made by snakemake > {output}"

rule use:
    input: storage.rucio("rucio://user.swf/smk.{run}.made.txt")
    output: "copy.txt"
    shell: "cp {input} {output}"
'''


def test_outputs_go_to_rucio_and_come_back(rucio_env, tmp_path):
    from rucio.client import Client

    run = tmp_path.name.replace("_", "-")
    (tmp_path / "Snakefile").write_text(SNAKEFILE.replace("{run}", run))
    env = {**os.environ, **rucio_env}
    client = Client()
    dataset = f"smk.{run}.outputs"
    client.add_dataset("user.swf", dataset)  # the plugin attaches what it uploads here
    result = subprocess.run(
        [str(BIN / "snakemake"), "-c1", "--storage-rucio-upload-rse", "E1_BNL_DISK",
         "--storage-rucio-download-rse", "E1_BNL_DISK", "--storage-rucio-upload-dataset",
         dataset,  # a name, in the file's own scope ("scope:name" is InvalidObject)
         # DIDs verbatim: the plugin's default path quoting writes "a-b" as "a--b"
         "--storage-rucio-no-path-rewriting"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert (tmp_path / "copy.txt").read_text() == "made by snakemake\n"
    attached = [d["name"] for d in client.list_content("user.swf", dataset)]
    assert attached == [f"smk.{run}.made.txt"]
    replicas = list(client.list_replicas([{"scope": "user.swf",
                                           "name": f"smk.{run}.made.txt"}]))
    assert replicas and "E1_BNL_DISK" in replicas[0]["rses"], replicas
