cwlVersion: v1.2
class: Workflow
requirements: {SubworkflowFeatureRequirement: {}}
inputs: {f: File}
outputs: {out: {type: File, outputSource: again/out}}
steps:
  first:
    run: level1.cwl
    in: {f: f}
    out: [out]
  again:
    run: level1.cwl
    in: {f: first/out}
    out: [out]
