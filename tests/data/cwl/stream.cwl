cwlVersion: v1.2
class: Workflow
$namespaces: {swf: "https://github.com/swfflow/swfflow/cwl#"}
requirements: {ScatterFeatureRequirement: {}}
inputs:
  stfs: {type: "File[]", "swf:stream": true}
  calib: File
outputs: []
steps:
  reco:
    run: tools/plain.cwl
    scatter: f
    in: {f: stfs}
    out: [out]
    hints:
      swf:Sizing: {filesPerJob: 2, maxFilesPerJob: 10, gbPerJob: 4.5, nJobs: 7}
      swf:Retry: {attempts: 3}
  qa:
    run: tools/plain.cwl
    scatter: f
    in: {f: reco/out}
    out: [out]
  qa_after_close:
    run: tools/plain.cwl
    scatter: f
    in: {f: {source: reco/out, "swf:mode": complete}}
    out: [out]
  merge:
    run: tools/cat.cwl
    in: {files: reco/out}
    out: [out]
  eager_merge:
    run: tools/cat.cwl
    in: {files: {source: reco/out, "swf:mode": stream}}
    out: [out]
  whole_run:
    run: tools/cat.cwl
    in: {files: {source: stfs, "swf:mode": complete}}
    out: [out]
  uses_calib:
    run: tools/plain.cwl
    in: {f: calib}
    out: [out]
