#!/usr/bin/env cwl-runner
# ecal-prompt: composed by `swfflow template compose`; do not edit, change the spec and compose again.
cwlVersion: v1.2
class: Workflow
$namespaces:
  swf: https://github.com/swfflow/swfflow/cwl#
label: ecal-prompt
doc: |
  Prompt ECal processing of one run: per-STF reconstruction and integrity checks while the run
  takes data, a fast-monitoring skim, the merge of the per-STF results once the run is closed,
  and a calibration fit with prompt feedback.
requirements:
- class: ScatterFeatureRequirement
inputs:
  stf_files:
    type: File[]
    swf:stream: true
    doc: the run's STF files (the open run dataset)
  manifest:
    type: File
    doc: reference adler32 checksums from the DAQ
outputs:
  reco:
    type: File[]
    outputSource: reco/reco
  skims:
    type: File[]
    outputSource: skim/summary
  reco_summary:
    type: File
    outputSource: merge_reco/merged
  integrity:
    type: File
    outputSource: merge_checks/merged
  constants:
    type: File
    outputSource: calib/constants
  feedback:
    type: File
    outputSource: calib/feedback
steps:
  reco:
    run: tools/reco.cwl
    scatter: stf
    in:
      stf:
        source: stf_files
        swf:mode: stream
    out:
    - reco
  check:
    run: tools/check.cwl
    scatter: stf
    in:
      stf:
        source: stf_files
        swf:mode: stream
      manifest:
        source: manifest
        swf:mode: complete
    out:
    - check
  skim:
    run: tools/skim.cwl
    scatter: stf
    in:
      stf:
        source: stf_files
        swf:mode: stream
    out:
    - skim
    - summary
  merge_reco:
    run: tools/merge_reco.cwl
    in:
      parts:
        source: reco/reco
        swf:mode: complete
    out:
    - merged
  merge_checks:
    run: tools/merge_checks.cwl
    in:
      parts:
        source: check/check
        swf:mode: complete
    out:
    - merged
  calib:
    run: tools/calib.cwl
    in:
      merged:
        source: merge_reco/merged
        swf:mode: complete
    out:
    - constants
    - feedback
