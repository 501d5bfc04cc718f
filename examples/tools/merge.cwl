cwlVersion: v1.2
class: CommandLineTool
label: "Merge per-STF histograms of the run"
requirements:
  ResourceRequirement: {coresMin: 1, ramMin: 1000, outdirMin: 64, tmpdirMin: 64}
  ToolTimeLimit: {timelimit: 600}
hints:
  DockerRequirement: {dockerPull: "python:3.11-slim"}
baseCommand: [python3]
inputs:
  kit:
    type: File
    default: {class: File, location: bin/calibkit.py}
    inputBinding: {position: 0}
  hists:
    type: File[]
    inputBinding: {position: 2}
arguments:
  - {position: 1, valueFrom: merge}
outputs:
  merged:
    type: File
    outputBinding: {glob: merged.hist.json}
