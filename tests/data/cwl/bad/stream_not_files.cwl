cwlVersion: v1.2
class: Workflow
$namespaces: {swf: "https://github.com/swfflow/swfflow/cwl#"}
inputs:
  a: {type: string, "swf:stream": true}
outputs: []
steps: []
