cwlVersion: v1.2
class: CommandLineTool
label: "Reconstruct one STF: per-channel ADC sums"
requirements:
  ResourceRequirement: {coresMin: 1, ramMin: 2000, outdirMin: 64, tmpdirMin: 64}
  ToolTimeLimit: {timelimit: 1800}
hints:
  DockerRequirement: {dockerPull: "python:3.11-slim"}
baseCommand: [python3]
inputs:
  kit:
    type: File
    default: {class: File, location: bin/calibkit.py}
    inputBinding: {position: 0}
  stf:
    type: File
    inputBinding: {position: 2}
arguments:
  - {position: 1, valueFrom: reco}
outputs:
  hist:
    type: File
    outputBinding: {glob: "*.hist.json"}
