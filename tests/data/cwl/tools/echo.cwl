cwlVersion: v1.2
class: CommandLineTool
baseCommand: echo
requirements:
  ResourceRequirement: {coresMin: 2, ramMin: 1024, outdirMin: 100, tmpdirMin: 50}
  ToolTimeLimit: {timelimit: 600}
hints:
  DockerRequirement: {dockerPull: "alpine:3"}
inputs:
  msg: {type: string, inputBinding: {position: 1}}
  tag: {type: "string?", inputBinding: {prefix: --tag, position: 0}}
outputs:
  out: stdout
stdout: echo.txt
