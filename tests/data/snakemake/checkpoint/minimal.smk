rule all:
    input: "done.txt"

checkpoint split:
    output: directory("parts")
    shell: "mkdir -p {output}"

rule done:
    input: "parts"
    output: "done.txt"
    shell: "touch {output}"
