# stf-reco 1.0.0: Per-STF reconstruction.
# Rendered by `swfflow template render`; do not edit: change templates/stf-reco/ instead.
rule stf_reco:
    input:
        stf=os.path.join(config.get("stf_dir", "data/stf"), "{stf}.stf"),
    output:
        reco=os.path.join(config.get("results", "results"), "stf_reco", "{stf}.reco.json"),
    log:
        "logs/stf_reco/{stf}.log",
    params:
        payload=workflow.source_path("../templates/_lib/swf_payload.py"),
        swf_mode='stream',
        detector='all',
        threshold=16,
        tf_size_kb=64,
    threads: 1
    resources:
        mem_mb=2000,
        disk_mb=4000,
        runtime=30,
    retries: 3
    container:
        "docker://python:3.11-slim"
    shell:
        "python3 {params.payload:q} reco"
        " --stf {input.stf:q}"
        " --reco {output.reco:q}"
        " --detector {params.detector:q}"
        " --threshold {params.threshold:q}"
        " --tf-size-kb {params.tf_size_kb:q}"
        " 2> {log:q}"
