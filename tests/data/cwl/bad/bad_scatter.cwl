cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs: {a: "string[]", b: "string[]"}
outputs: []
steps:
  s1:
    run: ../tools/echo.cwl
    scatter: [msg, tag]
    in: {msg: a, tag: b}
    out: [out]
