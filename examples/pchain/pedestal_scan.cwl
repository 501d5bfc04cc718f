# A pchain-dialect workflow (PanDA's own CWL flavour): every step is a prun task described by
# opt_* inputs; swfflow compiles it to the task parameters pchain would submit.
cwlVersion: v1.2
class: Workflow
requirements:
  MultipleInputFeatureRequirement: {}

inputs:
  noise_run: string

outputs:
  constants:
    type: string
    outputSource: combine/outDS
  alarm:
    type: string
    outputSource: alarm/outDS

steps:
  seeds:
    run: prun
    in:
      opt_exec:
        default: "echo %RNDM:100 > seed.txt"
      opt_args:
        default: "--outputs seed.txt --nJobs 3"
    out: [outDS]

  pedestals:
    run: prun
    in:
      opt_inDS: noise_run
      opt_exec:
        default: "python3 pedestal.py %IN > ped.json"
      opt_args:
        default: "--outputs ped.json --nFilesPerJob 2"
    out: [outDS]

  gains:
    run: prun
    in:
      opt_inDS: seeds/outDS
      opt_containerImage:
        default: docker://python:3.11-slim
      opt_exec:
        default: "python3 gain.py --seed %IN > gain.json"
      opt_args:
        default: "--outputs gain.json --nGBPerJob 5"
    out: [outDS]

  combine:
    run: prun
    in:
      opt_inDS: gains/outDS
      opt_secondaryDSs: [pedestals/outDS]
      opt_secondaryDsTypes:
        default: [ped.json]
      opt_exec:
        default: "python3 combine.py %IN %IN2 > constants.json"
      opt_args:
        default: "--outputs constants.json --secondaryDSs IN2:1:%{SECDS1}"
    out: [outDS]
    when: $(self.opt_inDS && self.opt_secondaryDSs)

  alarm:
    run: prun
    in:
      opt_inDS: gains/outDS
      opt_exec:
        default: "echo calibration failed > alarm.txt"
      opt_args:
        default: "--outputs alarm.txt"
    out: [outDS]
    when: $(!self.opt_inDS)
