cwlVersion: v1.2
class: ExpressionTool
requirements: {InlineJavascriptRequirement: {}}
inputs:
  files: "File[]"
outputs:
  n: int
expression: "$({'n': inputs.files.length})"
