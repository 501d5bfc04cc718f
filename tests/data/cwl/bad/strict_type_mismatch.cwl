cwlVersion: v1.2
class: Workflow
inputs: {a: File}
outputs: []
steps:
  s1:
    run: ../tools/plain.cwl
    in: {f: a}
    out: [out]
  s2:
    run: ../tools/echo.cwl
    in: {msg: s1/out}
    out: [out]
