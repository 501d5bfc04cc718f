# merge 1.0.0: Merge (gather) of per-STF results once the run is closed.
# Rendered by `swfflow template render`; do not edit: change templates/merge/ instead.
rule merge:
    input:
        parts=expand(os.path.join(config.get("parts_dir", "data/parts"), "{stf}.json"), stf=glob_wildcards(os.path.join(config.get("parts_dir", "data/parts"), "{stf}.json")).stf),
    output:
        merged=os.path.join(config.get("results", "results"), "merge", "merge.merged.json"),
    log:
        "logs/merge.log",
    params:
        payload=workflow.source_path("../templates/_lib/swf_payload.py"),
        swf_mode='complete',
        expect_kind='any',
        min_inputs=1,
    threads: 1
    resources:
        mem_mb=2000,
        disk_mb=2000,
        runtime=30,
    retries: 2
    container:
        "docker://python:3.11-slim"
    shell:
        "python3 {params.payload:q} merge"
        " --parts {input.parts:q}"
        " --merged {output.merged:q}"
        " --expect-kind {params.expect_kind:q}"
        " --min-inputs {params.min_inputs:q}"
        " 2> {log:q}"
