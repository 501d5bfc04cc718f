# fast-skim 1.0.0: Fast-monitoring skim of the STF stream.
# Rendered by `swfflow template render`; do not edit: change templates/fast-skim/ instead.
rule fast_skim:
    input:
        stf=os.path.join(config.get("stf_dir", "data/stf"), "{stf}.stf"),
    output:
        skim=os.path.join(config.get("results", "results"), "fast_skim", "{stf}.skim"),
        summary=os.path.join(config.get("results", "results"), "fast_skim", "{stf}.skim.json"),
    log:
        "logs/fast_skim/{stf}.log",
    params:
        payload=workflow.source_path("../templates/_lib/swf_payload.py"),
        swf_mode='stream',
        tf_first=0,
        tf_last=-1,
        sampling_fraction=0.1,
        seed=0,
        alarm_mean=200.0,
        tf_size_kb=64,
    threads: 1
    resources:
        mem_mb=1000,
        disk_mb=2000,
        runtime=10,
    retries: 1
    container:
        "docker://python:3.11-slim"
    shell:
        "python3 {params.payload:q} skim"
        " --stf {input.stf:q}"
        " --skim {output.skim:q}"
        " --summary {output.summary:q}"
        " --tf-first {params.tf_first:q}"
        " --tf-last {params.tf_last:q}"
        " --sampling-fraction {params.sampling_fraction:q}"
        " --seed {params.seed:q}"
        " --alarm-mean {params.alarm_mean:q}"
        " --tf-size-kb {params.tf_size_kb:q}"
        " 2> {log:q}"
