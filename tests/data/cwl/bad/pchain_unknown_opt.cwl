cwlVersion: v1.2
class: Workflow
inputs: []
outputs: []
steps:
  top:
    run: prun
    in:
      opt_exec: {default: "echo hi > a.txt"}
      opt_walltime: {default: "3600"}
    out: [outDS]
