# checksum-validate 1.0.0: Checksum and integrity validation of each STF file as it arrives.
# Rendered by `swfflow template render`; do not edit: change templates/checksum-validate/ instead.
rule checksum_validate:
    input:
        stf=os.path.join(config.get("stf_dir", "data/stf"), "{stf}.stf"),
    output:
        check=os.path.join(config.get("results", "results"), "checksum_validate", "{stf}.check.json"),
    log:
        "logs/checksum_validate/{stf}.log",
    params:
        payload=workflow.source_path("../templates/_lib/swf_payload.py"),
        swf_mode='stream',
        algorithm='adler32',
        sampling_fraction=1.0,
        fail_on_mismatch=False,
    threads: 1
    resources:
        mem_mb=500,
        disk_mb=500,
        runtime=10,
    retries: 1
    container:
        "docker://python:3.11-slim"
    shell:
        "python3 {params.payload:q} checksum"
        " --stf {input.stf:q}"
        " --check {output.check:q}"
        " --algorithm {params.algorithm:q}"
        " --sampling-fraction {params.sampling_fraction:q}"
        " --fail-on-mismatch {params.fail_on_mismatch:q}"
        " 2> {log:q}"
