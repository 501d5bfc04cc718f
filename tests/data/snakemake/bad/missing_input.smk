rule all:
    input: "x.out"

rule a:
    input: "missing.in"
    output: "x.out"
    shell: "cp {input} {output}"
