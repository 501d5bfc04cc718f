rule all:
    input: "x.out"

rule a:
    output: "x.out"
    params: x=undefined_name
    shell: "touch {output}"
