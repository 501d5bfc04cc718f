# The ePIC STF chain of one run, built from the template library's rule modules (rules/):
# per-STF reconstruction and a fast-QA skim while the run takes data (both stream the run's
# STF files), then - once the run is closed - the merge of the per-STF results and the
# calibration fit with prompt feedback for the shift crew.
#
#   snakemake -c2                                   # locally
#   swfflow profile install && snakemake --profile panda            # on PanDA + Rucio
#   swfflow compile Snakefile --config stf_dir=examples/data       # the PanDA task plan
#
# Config (--config KEY=VALUE): stf_dir (folder of *.stf files), results (output folder),
# detector (ecal, hcal, tracker, pid, all).

STF_DIR = config.setdefault("stf_dir", "examples/data")
RESULTS = config.setdefault("results", "results")
STFS = glob_wildcards(os.path.join(STF_DIR, "{stf}.stf")).stf

wildcard_constraints:
    stf=r"[^/]+",


rule all:
    default_target: True
    input:
        reco=expand(os.path.join(RESULTS, "stf_reco", "{stf}.reco.json"), stf=STFS),
        skims=expand(os.path.join(RESULTS, "fast_skim", "{stf}.skim.json"), stf=STFS),
        merged=os.path.join(RESULTS, "merge", "merge.merged.json"),
        constants=os.path.join(RESULTS, "calib_fit", "calib_fit.constants.json"),
        feedback=os.path.join(RESULTS, "calib_fit", "calib_fit.feedback.json"),


module reco_module:
    snakefile: "rules/stf_reco.smk"
    config: config

use rule stf_reco from reco_module as stf_reco


module skim_module:
    snakefile: "rules/fast_skim.smk"
    config: config

use rule fast_skim from skim_module as fast_skim


module merge_module:
    snakefile: "rules/merge.smk"
    config: {**config, "parts_dir": os.path.join(RESULTS, "stf_reco")}

# the merge gathers the reconstruction outputs (a complete edge: it waits for the run to close)
use rule merge from merge_module as merge with:
    input:
        parts=expand(os.path.join(RESULTS, "stf_reco", "{stf}.reco.json"), stf=STFS),


module calib_module:
    snakefile: "rules/calib_fit.smk"
    config: {**config, "merged": os.path.join(RESULTS, "merge", "merge.merged.json")}

use rule calib_fit from calib_module as calib_fit
