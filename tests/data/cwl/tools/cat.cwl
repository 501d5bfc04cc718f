cwlVersion: v1.2
class: CommandLineTool
baseCommand: cat
requirements:
  DockerRequirement: {dockerPull: "debian:12"}
inputs:
  files: {type: "File[]", inputBinding: {position: 1}}
outputs:
  out: stdout
stdout: cat.txt
