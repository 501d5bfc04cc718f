cwlVersion: v1.2
class: CommandLineTool
label: "adler32 checksums of the calibration products"
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
  files:
    type: File[]
    inputBinding: {position: 2}
arguments:
  - {position: 1, valueFrom: checksum}
outputs:
  checksums:
    type: File
    outputBinding: {glob: checksums.txt}
