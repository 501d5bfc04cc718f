cwlVersion: v1.2
class: Workflow
requirements: {SubworkflowFeatureRequirement: {}}
inputs: {f: File}
outputs: {out: {type: File, outputSource: level2/out}}
steps:
  level2:
    run: level2.cwl
    in: {f: f}
    out: [out]
