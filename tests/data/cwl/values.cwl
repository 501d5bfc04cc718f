cwlVersion: v1.2
class: Workflow
requirements:
  StepInputExpressionRequirement: {}
  MultipleInputFeatureRequirement: {}
  InlineJavascriptRequirement: {}
inputs:
  prefix: {type: string, default: run}
  number: int
  a: File
  b: File[]
outputs: []
steps:
  label:
    run: tools/echo.cwl
    in:
      msg: {source: number, valueFrom: "$(inputs.tag + '-' + self)"}
      tag: {source: prefix}
    out: [out]
  upstream_expr:
    run: tools/echo.cwl
    in:
      msg: {source: label/out, valueFrom: "$(self.basename)"}
    out: [out]
  flat:
    run: tools/cat.cwl
    in:
      files: {source: [a, b, label/out], linkMerge: merge_flattened}
    out: [out]
  nested:
    run: tools/count.cwl
    in:
      files: {source: [a, label/out], linkMerge: merge_nested}
    out: [n]
  defaults:
    run: tools/echo.cwl
    in:
      msg: {default: fallback}
      tag: {source: prefix, default: unused}
    out: [out]
