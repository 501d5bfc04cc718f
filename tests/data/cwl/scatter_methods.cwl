cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs:
  msgs: string[]
  tags: string[]
outputs: []
steps:
  dot:
    run: tools/echo.cwl
    scatter: [msg, tag]
    scatterMethod: dotproduct
    in: {msg: msgs, tag: tags}
    out: [out]
  flat:
    run: tools/echo.cwl
    scatter: [msg, tag]
    scatterMethod: flat_crossproduct
    in: {msg: msgs, tag: tags}
    out: [out]
  nested:
    run: tools/echo.cwl
    scatter: [msg, tag]
    scatterMethod: nested_crossproduct
    in: {msg: msgs, tag: tags}
    out: [out]
  single:
    run: tools/echo.cwl
    scatter: msg
    in: {msg: msgs}
    out: [out]
