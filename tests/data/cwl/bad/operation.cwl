cwlVersion: v1.2
class: Workflow
inputs: {a: string}
outputs: []
steps:
  abstract:
    run:
      class: Operation
      inputs: {x: string}
      outputs: {y: string}
    in: {x: a}
    out: [y]
