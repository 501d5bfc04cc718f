# calib-fit 1.0.0: Calibration fit with prompt feedback.
# Rendered by `swfflow template render`; do not edit: change templates/calib-fit/ instead.
rule calib_fit:
    input:
        merged=config.get("merged", "data/merged.merged.json"),
    output:
        constants=os.path.join(config.get("results", "results"), "calib_fit", "calib_fit.constants.json"),
        feedback=os.path.join(config.get("results", "results"), "calib_fit", "calib_fit.feedback.json"),
    log:
        "logs/calib_fit.log",
    params:
        payload=workflow.source_path("../templates/_lib/swf_payload.py"),
        swf_mode='complete',
        detector='all',
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
