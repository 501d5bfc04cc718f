cwlVersion: v1.2
class: CommandLineTool
label: "Fast QA of one reconstructed STF (occupancy)"
requirements:
  ResourceRequirement: {coresMin: 1, ramMin: 500, outdirMin: 64, tmpdirMin: 64}
  ToolTimeLimit: {timelimit: 300}
hints:
  DockerRequirement: {dockerPull: "python:3.11-slim"}
baseCommand: [python3]
inputs:
  kit:
    type: File
    default: {class: File, location: bin/calibkit.py}
    inputBinding: {position: 0}
  hist:
    type: File
    inputBinding: {position: 2}
  min_hits:
    type: int
    default: 2
    inputBinding: {position: 3}
arguments:
  - {position: 1, valueFrom: qa}
outputs:
  qa:
    type: File
    outputBinding: {glob: "*.qa.json"}
