cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}, SubworkflowFeatureRequirement: {}}
inputs:
  groups: {type: {type: array, items: {type: array, items: string}}}
outputs:
  out: {type: {type: array, items: {type: array, items: File}}, outputSource: per_group/out}
steps:
  per_group:
    scatter: msgs
    in: {msgs: groups}
    out: [out]
    run:
      class: Workflow
      inputs: {msgs: "string[]"}
      outputs: {out: {type: "File[]", outputSource: each/out}}
      steps:
        each:
          run: tools/echo.cwl
          scatter: msg
          in: {msg: msgs}
          out: [out]
