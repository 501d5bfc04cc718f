cwlVersion: v1.2
class: Workflow
inputs: {f: File}
outputs: {out: {type: File, outputSource: leaf/out}}
steps:
  leaf:
    run: ../tools/plain.cwl
    in: {f: f}
    out: [out]
