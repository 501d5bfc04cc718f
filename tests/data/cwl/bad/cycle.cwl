cwlVersion: v1.2
class: Workflow
inputs: {a: File}
outputs: []
steps:
  ping:
    run: ../tools/plain.cwl
    in: {f: pong/out}
    out: [out]
  pong:
    run: ../tools/plain.cwl
    in: {f: ping/out}
    out: [out]
