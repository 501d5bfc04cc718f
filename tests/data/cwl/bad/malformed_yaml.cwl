cwlVersion: v1.2
class: Workflow
inputs: {a: string
outputs: []
steps: []
