cwlVersion: v1.2
class: Workflow
label: Validation of the calibration products (checksums + integrity)
inputs:
  products: File[]
  constants: File
outputs:
  checksums: {type: File, outputSource: checksum/checksums}
  report: {type: File, outputSource: integrity/report}
steps:
  checksum:
    run: checksum.cwl
    in: {files: products}
    out: [checksums]
  integrity:
    run: integrity.cwl
    in: {constants: constants, checksums: checksum/checksums}
    out: [report]
