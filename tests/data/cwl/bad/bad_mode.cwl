cwlVersion: v1.2
class: Workflow
$namespaces: {swf: "https://github.com/swfflow/swfflow/cwl#"}
inputs: {a: File}
outputs: []
steps:
  s1:
    run: ../tools/plain.cwl
    in: {f: a}
    out: [out]
  s2:
    run: ../tools/plain.cwl
    in: {f: {source: s1/out, "swf:mode": sometimes}}
    out: [out]
