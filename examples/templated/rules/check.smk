# checksum-validate 1.0.0: Checksum and integrity validation of each STF file as it arrives.
# Rendered by `swfflow template render`; do not edit: change templates/checksum-validate/ instead.
rule check:
    input:
        stf=os.path.join(STF_FILES_DIR, "{stf}.stf"),
        manifest=MANIFEST_PATH,
    output:
        check="results/check/{stf}.check.json",
    log:
        "logs/check/{stf}.log",
    params:
        payload=workflow.source_path("swf_payload.py"),
        swf_mode='stream',
        swf_input_modes={'stf': 'stream', 'manifest': 'complete'},
        algorithm='adler32',
        sampling_fraction=1.0,
        fail_on_mismatch=True,
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
        " --manifest {input.manifest:q}"
        " --check {output.check:q}"
        " --algorithm {params.algorithm:q}"
        " --sampling-fraction {params.sampling_fraction:q}"
        " --fail-on-mismatch {params.fail_on_mismatch:q}"
        " 2> {log:q}"
