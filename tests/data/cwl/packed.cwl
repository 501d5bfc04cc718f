cwlVersion: v1.2
$graph:
  - id: tool
    class: CommandLineTool
    baseCommand: cat
    inputs: {f: {type: File, inputBinding: {}}}
    outputs: {out: stdout}
  - id: sub
    class: Workflow
    inputs: {f: File}
    outputs: {out: {type: File, outputSource: t/out}}
    steps:
      t: {run: "#tool", in: {f: f}, out: [out]}
  - id: main
    class: Workflow
    requirements: {SubworkflowFeatureRequirement: {}, ScatterFeatureRequirement: {}}
    inputs: {files: "File[]"}
    outputs: {out: {type: "File[]", outputSource: s2/out}}
    steps:
      s1: {run: "#tool", scatter: f, in: {f: files}, out: [out]}
      s2: {run: "#sub", scatter: f, in: {f: s1/out}, out: [out]}
