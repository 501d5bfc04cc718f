cwlVersion: v1.2
class: CommandLineTool
label: "Gain calibration fit: constants + prompt feedback"
requirements:
  ResourceRequirement: {coresMin: 2, ramMin: 2000, outdirMin: 64, tmpdirMin: 64}
  ToolTimeLimit: {timelimit: 1200}
hints:
  DockerRequirement: {dockerPull: "python:3.11-slim"}
baseCommand: [python3]
inputs:
  kit:
    type: File
    default: {class: File, location: bin/calibkit.py}
    inputBinding: {position: 0}
  merged:
    type: File
    inputBinding: {position: 2}
  detector:
    type: string
    inputBinding: {position: 3}
arguments:
  - {position: 1, valueFrom: fit}
outputs:
  constants:
    type: File
    outputBinding: {glob: constants.json}
  feedback:
    type: File
    outputBinding: {glob: feedback.json}
