cwlVersion: v1.2
class: Workflow
inputs: {n: int}
outputs: []
steps:
  s1:
    run: ../tools/echo.cwl
    when: $(inputs.n)
    in: {msg: {default: x}, n: n}
    out: [out]
