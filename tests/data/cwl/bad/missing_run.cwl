cwlVersion: v1.2
class: Workflow
inputs: {a: string}
outputs: []
steps:
  s1:
    run: ../tools/does_not_exist.cwl
    in: {msg: a}
    out: [out]
