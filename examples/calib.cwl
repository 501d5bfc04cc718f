#!/usr/bin/env cwl-runner
cwlVersion: v1.2
class: Workflow
label: Prompt calorimeter gain calibration of one run
doc: |
  Per-STF reconstruction while the run is taking data (streamed from the run's open
  dataset), an optional fast-QA branch, then - once the run closes - a merge of the
  per-STF histograms, the gain fit (constants + prompt feedback for the shift crew) and a
  validation sub-workflow (adler32 checksums + integrity of the constants).
$namespaces:
  swf: "https://github.com/swfflow/swfflow/cwl#"
requirements:
  ScatterFeatureRequirement: {}
  SubworkflowFeatureRequirement: {}
  MultipleInputFeatureRequirement: {}
  InlineJavascriptRequirement: {}

inputs:
  stf_files:
    type: File[]
    swf:stream: true
    doc: The run's super-time-frame files (open Rucio dataset while the DAQ runs)
  qa_enabled:
    type: boolean
    default: true
  detector:
    type: string
    default: bemc

outputs:
  constants: {type: File, outputSource: fit/constants}
  feedback: {type: File, outputSource: fit/feedback}
  qa_reports:
    type: File[]
    outputSource: fast_qa/qa
    pickValue: all_non_null
  checksums: {type: File, outputSource: validate/checksums}
  validation_report: {type: File, outputSource: validate/report}

steps:
  reconstruct:
    run: tools/reco.cwl
    scatter: stf
    in:
      stf: stf_files
    out: [hist]
    hints:
      swf:Sizing: {filesPerJob: 1}
      swf:Retry: {attempts: 2}

  fast_qa:
    run: tools/fastqa.cwl
    scatter: hist
    when: $(inputs.qa_enabled)
    in:
      hist: reconstruct/hist
      qa_enabled: qa_enabled
    out: [qa]

  merge:
    run: tools/merge.cwl
    in:
      hists: reconstruct/hist
    out: [merged]

  fit:
    run: tools/fit.cwl
    in:
      merged: merge/merged
      detector: detector
    out: [constants, feedback]

  validate:
    run: tools/validate.cwl
    in:
      products:
        source: [fit/constants, fit/feedback, merge/merged]
        linkMerge: merge_flattened
      constants: fit/constants
    out: [checksums, report]
