rule all:
    input: "b.txt"

rule a:
    output: "a.txt"
    shell: "touch {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    params: swf_mode="sometimes"
    shell: "cp {input} {output}"
