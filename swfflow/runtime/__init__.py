"""Run-time CWL: leaf tools through cwltool (:mod:`.tool`), expressions (:mod:`.expr`), and the
workflow semantics swfflow evaluates itself — scatter, valueFrom, linkMerge, pickValue, when,
defaults, sub-workflows — over the IR (:mod:`.engine`)."""
