cwlVersion: v1.2
class: Workflow
requirements: {InlineJavascriptRequirement: {}, MultipleInputFeatureRequirement: {}}
inputs:
  flag: boolean
  threshold: {type: int, default: 3}
  msg: {type: string, default: hello}
outputs:
  chosen:
    type: File
    outputSource: [fast/out, slow/out]
    pickValue: first_non_null
steps:
  fast:
    run: tools/echo.cwl
    when: $(inputs.flag)
    in: {msg: msg, flag: flag}
    out: [out]
  slow:
    run: tools/echo.cwl
    when: $(inputs.threshold > 5)
    in: {msg: msg, threshold: threshold}
    out: [out]
  after:
    run: tools/plain.cwl
    when: $(inputs.f.size > 0)
    in:
      f:
        source: [fast/out, slow/out]
        pickValue: the_only_non_null
    out: [out]
