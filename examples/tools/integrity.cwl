cwlVersion: v1.2
class: CommandLineTool
label: "Integrity check of the constants against the checksum list"
requirements:
  ResourceRequirement: {coresMin: 1, ramMin: 250, outdirMin: 64, tmpdirMin: 64}
  ToolTimeLimit: {timelimit: 300}
hints:
  DockerRequirement: {dockerPull: "python:3.11-slim"}
baseCommand: [python3]
inputs:
  kit:
    type: File
    default: {class: File, location: bin/calibkit.py}
    inputBinding: {position: 0}
  constants:
    type: File
    inputBinding: {position: 2}
  checksums:
    type: File
    inputBinding: {position: 3}
arguments:
  - {position: 1, valueFrom: integrity}
outputs:
  report:
    type: File
    outputBinding: {glob: validation.json}
