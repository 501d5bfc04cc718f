cwlVersion: v1.2
class: Workflow
inputs: {a: string}
outputs: []
steps:
  s1:
    run: ../tools/echo.cwl
    in: {msg: a}
    out: [out]
    scatterMethod: sideways
