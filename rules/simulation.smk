# simulation 1.0.0: Simulation production without an input dataset.
# Rendered by `swfflow template render`; do not edit: change templates/simulation/ instead.
rule simulation:
    output:
        events=os.path.join(config.get("results", "results"), "simulation", "simulation.sim.stf"),
    log:
        "logs/simulation.log",
    params:
        payload=workflow.source_path("../templates/_lib/swf_payload.py"),
        swf_mode='complete',
        n_events=1000,
        seed=1,
        generator='dis',
    threads: 1
    resources:
        mem_mb=2000,
        disk_mb=4000,
        runtime=120,
    retries: 3
    container:
        "docker://python:3.11-slim"
    shell:
        "python3 {params.payload:q} simulate"
        " --events {output.events:q}"
        " --n-events {params.n_events:q}"
        " --seed {params.seed:q}"
        " --generator {params.generator:q}"
        " 2> {log:q}"
