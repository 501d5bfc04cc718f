# calib-fit 1.0.0: Calibration fit with prompt feedback.
# Rendered by `swfflow template render`; do not edit: change templates/calib-fit/ instead.
rule calib:
    input:
        merged="results/merge_reco/merge_reco.merged.json",
    output:
        constants="results/calib/calib.constants.json",
        feedback="results/calib/calib.feedback.json",
    log:
        "logs/calib.log",
    params:
        payload=workflow.source_path("swf_payload.py"),
        swf_mode='complete',
        detector='ecal',
        method='raw',
        target=100.0,
        tolerance=0.05,
    threads: 1
    resources:
        mem_mb=4000,
        disk_mb=1000,
        runtime=20,
    retries: 2
    container:
        "docker://python:3.11-slim"
    shell:
        "python3 {params.payload:q} fit"
        " --merged {input.merged:q}"
        " --constants {output.constants:q}"
        " --feedback {output.feedback:q}"
        " --detector {params.detector:q}"
        " --method {params.method:q}"
        " --target {params.target:q}"
        " --tolerance {params.tolerance:q}"
        " 2> {log:q}"
