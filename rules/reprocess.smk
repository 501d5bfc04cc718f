# reprocess 1.0.0: Reprocessing of a closed dataset with new calibration constants.
# Rendered by `swfflow template render`; do not edit: change templates/reprocess/ instead.
rule reprocess:
    input:
        stf=os.path.join(config.get("stf_dir", "data/stf"), "{stf}.stf"),
        constants=config.get("constants", "data/constants.constants.json"),
    output:
        reco=os.path.join(config.get("results", "results"), "reprocess", "{stf}.reco.json"),
    log:
        "logs/reprocess/{stf}.log",
    params:
        payload=workflow.source_path("../templates/_lib/swf_payload.py"),
        swf_mode='complete',
        detector='all',
        threshold=16,
        tf_size_kb=64,
    threads: 1
    resources:
        mem_mb=2000,
        disk_mb=8000,
        runtime=120,
    retries: 3
    container:
        "docker://python:3.11-slim"
    shell:
        "python3 {params.payload:q} reco"
        " --stf {input.stf:q}"
        " --constants {input.constants:q}"
        " --reco {output.reco:q}"
        " --detector {params.detector:q}"
        " --threshold {params.threshold:q}"
        " --tf-size-kb {params.tf_size_kb:q}"
        " 2> {log:q}"
