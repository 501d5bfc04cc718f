cwlVersion: v1.2
class: Workflow
requirements:
  ResourceRequirement: {coresMin: 8, ramMin: 512}
  SubworkflowFeatureRequirement: {}
hints:
  DockerRequirement: {dockerPull: "wf/image:1"}
  ToolTimeLimit: {timelimit: 60}
inputs:
  f: File
outputs: []
steps:
  from_workflow:
    run: tools/plain.cwl
    in: {f: f}
    out: [out]
  step_overrides:
    run: tools/plain.cwl
    requirements:
      ResourceRequirement: {coresMin: 4, ramMin: 2048}
      DockerRequirement: {dockerPull: "step/image:2"}
    in: {f: f}
    out: [out]
  tool_overrides:
    run: tools/echo.cwl
    requirements:
      ResourceRequirement: {coresMin: 16}
    in: {msg: {default: x}}
    out: [out]
  inner:
    run: depth/level1.cwl
    hints:
      DockerRequirement: {dockerPull: "inner/image:3"}
    in: {f: f}
    out: [out]
