cwlVersion: v1.2
class: Workflow
$namespaces: {cwltool: "http://commonwl.org/cwltool#"}
requirements:
  cwltool:MPIRequirement: {processes: 4}
inputs: {a: string}
outputs: []
steps:
  s1:
    run: ../tools/echo.cwl
    in: {msg: a}
    out: [out]
