rule all:
    input: "final.txt"

checkpoint first:
    output: directory("first")
    shell: "mkdir -p first && touch first/x.txt"

def after_first(wildcards):
    folder = checkpoints.first.get().output[0]
    return expand("second/{n}.txt", n=glob_wildcards(folder + "/{n}.txt").n)

checkpoint second:
    input: "first/{n}.txt"
    output: "second/{n}.txt"
    shell: "cp {input} {output}"

rule final:
    input: after_first
    output: "final.txt"
    shell: "cat {input} > {output}"
