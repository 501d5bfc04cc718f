#!/usr/bin/env cwl-runner
# stfsum.cwl plus ExpressionTool steps, which the driver evaluates on the client whatever the
# backend: `decide` computes the merge's `when` from a parameter, `count` reads only the
# metadata of the streaming step's outputs, `stf_lines` reads their contents (loadContents).
cwlVersion: v1.2
class: Workflow
$namespaces:
  swf: "https://github.com/swfflow/swfflow/cwl#"
requirements:
  InlineJavascriptRequirement: {}
inputs:
  stf_files:
    type: File[]
    swf:stream: true
  min_parts: {type: int, default: 1}
outputs:
  summary: {type: File?, outputSource: merge/summary}
steps:
  decide:
    run:
      class: ExpressionTool
      inputs:
        min_parts: int
      outputs:
        do_merge: boolean
        label: string
      expression: |
        ${ return {"do_merge": inputs.min_parts > 0, "label": "merge if " + inputs.min_parts}; }
    in: {min_parts: min_parts}
    out: [do_merge, label]
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
  count:
    run:
      class: ExpressionTool
      inputs:
        parts: File[]
      outputs:
        n: int
      expression: "$({'n': inputs.parts.length})"
    in: {parts: sizes/sizes}
    out: [n]
  stf_lines:
    run:
      class: ExpressionTool
      inputs:
        parts: {type: "File[]", loadContents: true}
      outputs:
        stfs: int
      expression: |
        ${ var n = 0;
           inputs.parts.forEach(function (part) {
             part.contents.split("\n").forEach(function (line) {
               if (/\.stf$/.test(line.trim())) { n += 1; }
             });
           });
           return {"stfs": n}; }
    in: {parts: sizes/sizes}
    out: [stfs]
  merge:
    run:
      class: CommandLineTool
      baseCommand: [cat]
      inputs:
        parts: {type: "File[]", inputBinding: {position: 1}}
      stdout: summary.txt
      outputs:
        summary: {type: stdout}
    in: {parts: sizes/sizes, go: decide/do_merge}
    when: $(inputs.go)
    out: [summary]
