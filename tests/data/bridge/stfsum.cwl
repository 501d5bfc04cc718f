#!/usr/bin/env cwl-runner
# A minimal streaming workflow for the bridge tests: per batch of STFs, a line with their
# names and sizes (while the run's dataset is open), then one merged summary at end of run.
cwlVersion: v1.2
class: Workflow
$namespaces:
  swf: "https://github.com/swfflow/swfflow/cwl#"
requirements:
  ScatterFeatureRequirement: {}
inputs:
  stf_files:
    type: File[]
    swf:stream: true
outputs:
  summary: {type: File, outputSource: merge/summary}
steps:
  sizes:
    run:
      class: CommandLineTool
      baseCommand: [wc, -c]
      inputs:
        stfs: {type: "File[]", inputBinding: {position: 1}}
      stdout: sizes.txt
      outputs:
        sizes: {type: stdout}
    in: {stfs: stf_files}
    out: [sizes]
    hints:
      swf:Sizing: {filesPerJob: 4}
  merge:
    run:
      class: CommandLineTool
      baseCommand: [cat]
      inputs:
        parts: {type: "File[]", inputBinding: {position: 1}}
      stdout: summary.txt
      outputs:
        summary: {type: stdout}
    in: {parts: sizes/sizes}
    out: [summary]
