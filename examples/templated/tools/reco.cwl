#!/usr/bin/env cwl-runner
# stf-reco 1.0.0 (step reco), rendered by `swfflow template render`.
# Do not edit: change templates/stf-reco/ or the parameters instead.
cwlVersion: v1.2
class: CommandLineTool
$namespaces:
  swf: "https://github.com/swfflow/swfflow/cwl#"
label: "stf-reco: Per-STF reconstruction"
doc: "Per-STF reconstruction. Runs once per super time frame (STF) file as the files arrive from the DAQ (streaming, the task runs until the run's dataset is closed); splits each STF into time frames, counts hits above a threshold and sums their energy, and writes one JSON result per STF."
requirements:
  - class: InitialWorkDirRequirement
    listing:
      - entryname: swf_payload.py
        entry: |
          #!/usr/bin/env python3
          """swfflow template-library payload: small, real STF-processing commands.

          Self-contained (standard library only, Python >= 3.8) so that it runs in any python:3 container
          and on any batch node: every rendered CWL tool embeds this file, every rendered Snakemake rule
          points at a copy of it. An STF file is read as a contiguous series of fixed-size time frames
          (TFs, ``--tf-size-kb``), whatever bytes it holds, so real DAQ files and simulator files both work.

          Subcommands: see COMMANDS (``--help`` of each). Flags are named like the template
          parameters and ports in meta.yaml (``tf_size_kb`` → ``--tf-size-kb``).
          """
          import argparse
          import hashlib
          import json
          import os
          import random
          import sys
          import zlib

          HIST_BINS = 16


          def iter_tfs(path, tf_size_kb):
              """Yield (index, bytes) for each TF of an STF file."""
              size = tf_size_kb * 1024
              with open(path, "rb") as stream:
                  index = 0
                  while True:
                      block = stream.read(size)
                      if not block:
                          return
                      yield index, block
                      index += 1


          def write_json(path, record):
              with open(path, "w") as out:
                  json.dump(record, out, indent=1, sort_keys=True)
                  out.write("\n")


          def read_json(path):
              with open(path) as src:
                  return json.load(src)


          def load_gain(constants_path, detector):
              if not constants_path:
                  return 1.0
              constants = read_json(constants_path)
              if constants.get("detector") not in (detector, "all"):
                  sys.exit("constants are for detector %r, not %r" % (constants.get("detector"), detector))
              return float(constants["gain"])


          def cmd_reco(args):
              """Per-STF reconstruction: hits above threshold and energy per TF, an occupancy histogram."""
              gain = load_gain(args.constants, args.detector)
              hist = [0] * HIST_BINS
              n_tf = n_hits = 0
              energy = 0.0
              tf_bytes = args.tf_size_kb * 1024
              below = bytes(range(args.threshold + 1))  # deleted in C: sparse (zero) STFs cost nothing
              for _, block in iter_tfs(args.stf, args.tf_size_kb):
                  hits = block.translate(None, below)
                  n_tf += 1
                  n_hits += len(hits)
                  energy += gain * sum(hits)
                  hist[min(HIST_BINS - 1, len(hits) * HIST_BINS // tf_bytes)] += 1
              write_json(args.reco, {
                  "kind": "reco", "detector": args.detector, "source": os.path.basename(args.stf),
                  "gain": gain, "threshold": args.threshold, "n_tf": n_tf, "n_hits": n_hits,
                  "energy_sum": round(energy, 6), "occupancy_hist": hist,
              })


          def cmd_skim(args):
              """Fast-monitoring skim: TFs in [tf_first, tf_last] kept with probability sampling_fraction."""
              name = os.path.basename(args.stf)
              chooser = random.Random(args.seed * 1000003 + zlib.crc32(name.encode()))
              selected, means = [], []
              with open(args.skim, "wb") as skim:
                  for index, block in iter_tfs(args.stf, args.tf_size_kb):
                      if index < args.tf_first or (args.tf_last >= 0 and index > args.tf_last):
                          continue
                      if chooser.random() >= args.sampling_fraction:
                          continue
                      skim.write(block)
                      selected.append(index)
                      means.append(round(sum(block) / len(block), 4))
              anomalies = [tf for tf, mean in zip(selected, means) if mean > args.alarm_mean]
              write_json(args.summary, {
                  "kind": "skim", "source": name, "tf_first": args.tf_first, "tf_last": args.tf_last,
                  "sampling_fraction": args.sampling_fraction, "n_selected": len(selected),
                  "selected_tfs": selected, "tf_mean": means, "n_anomalies": len(anomalies),
                  "anomalous_tfs": anomalies,
              })


          def is_additive(key):
              """Counts (n_*), sums (*_sum) and histograms (*_hist) add up over inputs."""
              return key.startswith("n_") or key.endswith("_sum") or key.endswith("_hist")


          def add(total, value):
              if isinstance(value, list):
                  return value if total is None else [a + b for a, b in zip(total, value)]
              return value if total is None else total + value


          def cmd_merge(args):
              """Gather per-STF JSON results: counts, sums and histograms add up; settings shared by
              every input are kept; the sources are listed."""
              records = sorted((read_json(path) for path in args.parts), key=lambda r: r.get("source", ""))
              if len(records) < args.min_inputs:
                  sys.exit("merge: %d input(s), at least %d expected" % (len(records), args.min_inputs))
              kinds = sorted({r.get("kind", "unknown") for r in records})
              if args.expect_kind != "any" and kinds != [args.expect_kind]:
                  sys.exit("merge: inputs are of kind %s, expected only %s" % (kinds, args.expect_kind))
              if not records:
                  write_json(args.merged, {"kind": "merged", "n_inputs": 0, "sources": []})
                  return
              merged = {"kind": "merged", "merged_kind": records[0].get("kind", "unknown"),
                        "n_inputs": len(records), "sources": [r.get("source", "") for r in records]}
              for key in sorted({k for r in records for k in r} - {"kind", "source", "sources", "n_inputs"}):
                  values = [r[key] for r in records if key in r]
                  if is_additive(key):
                      total = None
                      for value in values:
                          total = add(total, value)
                      merged[key] = total
                  elif len(values) == len(records) and all(v == values[0] for v in values):
                      merged[key] = values[0]
              finish = FINISHERS.get(merged["merged_kind"])
              if finish:
                  finish(records, merged)
              write_json(args.merged, merged)


          ADLER_BASE = 65521


          def adler32_combine(first, second, second_length):
              """adler32 of A+B from adler32(A), adler32(B) and len(B) (zlib's adler32_combine)."""
              remainder = second_length % ADLER_BASE
              low = first & 0xFFFF
              high = (remainder * low) % ADLER_BASE
              low += (second & 0xFFFF) + ADLER_BASE - 1
              high += ((first >> 16) & 0xFFFF) + ((second >> 16) & 0xFFFF) + ADLER_BASE - remainder
              low %= ADLER_BASE
              high %= ADLER_BASE
              return low | (high << 16)


          def add_running_checksum(records, merged):
              """The run's running adler32: the checksum of all its files concatenated in name (= STF
              sequence) order, comparable between the two E1 copies of the run (req 3.4)."""
              if any(r.get("algorithm") != "adler32" or not r.get("n_checked") for r in records):
                  return  # sampled or another algorithm: no running checksum over the whole run
              running = 1
              for record in records:
                  running = adler32_combine(running, int(record["checksum"], 16), record["n_bytes"])
              merged["running_adler32"] = "%08x" % running


          # merged kind → what to add once the inputs are merged
          FINISHERS = {"checksum": add_running_checksum}


          def cmd_fit(args):
              """Calibration fit: gain that brings the mean hit energy to target; prompt feedback."""
              merged = read_json(args.merged)
              hits = merged.get("n_hits", 0)
              if not hits:
                  sys.exit("fit: the merged input has no hits; nothing to calibrate")
              energy = merged["energy_sum"] / merged.get("gain", 1.0) if args.method == "raw" else \
                  merged["energy_sum"]
              observed = energy / hits
              gain = args.target / observed
              deviation = abs(gain - 1.0)
              write_json(args.constants, {
                  "kind": "constants", "detector": args.detector, "gain": round(gain, 6),
                  "observed_mean": round(observed, 6), "target_mean": args.target,
                  "n_hits": hits, "n_inputs": merged.get("n_inputs", 1), "method": args.method,
              })
              write_json(args.feedback, {
                  "kind": "feedback", "detector": args.detector,
                  "status": "ok" if deviation <= args.tolerance else "recalibrate",
                  "gain": round(gain, 6), "deviation": round(deviation, 6), "tolerance": args.tolerance,
              })


          def cmd_simulate(args):
              """Simulation production without input data: one STF-like file of n_events events."""
              rng = random.Random(args.seed)
              scale = {"particle-gun": 40, "dis": 90}[args.generator]
              with open(args.events, "wb") as out:
                  for _ in range(args.n_events):
                      out.write(bytes(min(255, int(rng.expovariate(1.0 / scale))) for _ in range(256)))


          def checksum_of(path, algorithm):
              if algorithm == "adler32":
                  value = 1
                  with open(path, "rb") as src:
                      for block in iter(lambda: src.read(1 << 20), b""):
                          value = zlib.adler32(block, value)
                  return "%08x" % (value & 0xFFFFFFFF)
              digest = hashlib.new(algorithm)
              with open(path, "rb") as src:
                  for block in iter(lambda: src.read(1 << 20), b""):
                      digest.update(block)
              return digest.hexdigest()


          def cmd_checksum(args):
              """Integrity check of one file against an independent source (a DAQ/Rucio manifest)."""
              name = os.path.basename(args.stf)
              sampled = random.Random(zlib.crc32(name.encode())).random() < args.sampling_fraction
              record = {"kind": "checksum", "source": name, "algorithm": args.algorithm,
                        "n_bytes": os.path.getsize(args.stf), "n_checked": 0, "n_mismatch": 0,
                        "n_missing_reference": 0}
              if sampled:
                  actual = checksum_of(args.stf, args.algorithm)
                  expected = read_json(args.manifest).get(name) if args.manifest else None
                  record.update(checksum=actual, expected=expected, n_checked=1,
                                n_missing_reference=int(args.manifest is not None and expected is None),
                                n_mismatch=int(expected is not None and expected.lower() != actual))
              write_json(args.check, record)
              if record["n_mismatch"] and args.fail_on_mismatch:
                  sys.exit("checksum mismatch for %s: %s != expected %s"
                           % (name, record["checksum"], record["expected"]))


          def parse_bool(text):
              """Snakemake passes booleans as True/False text; CWL passes a bare flag (const True)."""
              if text.lower() in ("true", "1", "yes"):
                  return True
              if text.lower() in ("false", "0", "no"):
                  return False
              raise argparse.ArgumentTypeError("expected true or false, not %r" % text)


          # subcommand → (function, arguments as (flag, keyword arguments)); flags match meta.yaml names
          COMMANDS = {
              "reco": (cmd_reco, [
                  ("--stf", dict(required=True)), ("--reco", dict(required=True)), ("--constants", {}),
                  ("--detector", dict(required=True)), ("--threshold", dict(type=int, default=0)),
                  ("--tf-size-kb", dict(type=int, default=64))]),
              "skim": (cmd_skim, [
                  ("--stf", dict(required=True)), ("--skim", dict(required=True)),
                  ("--summary", dict(required=True)), ("--tf-first", dict(type=int, default=0)),
                  ("--tf-last", dict(type=int, default=-1)),
                  ("--sampling-fraction", dict(type=float, default=1.0)),
                  ("--seed", dict(type=int, default=0)), ("--alarm-mean", dict(type=float, default=200.0)),
                  ("--tf-size-kb", dict(type=int, default=64))]),
              "merge": (cmd_merge, [
                  ("--parts", dict(nargs="*", default=[])), ("--merged", dict(required=True)),
                  ("--expect-kind", dict(default="any")), ("--min-inputs", dict(type=int, default=1))]),
              "fit": (cmd_fit, [
                  ("--merged", dict(required=True)), ("--constants", dict(required=True)),
                  ("--feedback", dict(required=True)), ("--detector", dict(required=True)),
                  ("--method", dict(choices=["raw", "corrected"], default="raw")),
                  ("--target", dict(type=float, required=True)),
                  ("--tolerance", dict(type=float, default=0.05))]),
              "simulate": (cmd_simulate, [
                  ("--events", dict(required=True)), ("--n-events", dict(type=int, required=True)),
                  ("--seed", dict(type=int, default=1)),
                  ("--generator", dict(choices=["particle-gun", "dis"], default="dis"))]),
              "checksum": (cmd_checksum, [
                  ("--stf", dict(required=True)), ("--check", dict(required=True)), ("--manifest", {}),
                  ("--algorithm", dict(choices=["adler32", "md5", "sha256"], default="adler32")),
                  ("--sampling-fraction", dict(type=float, default=1.0)),
                  ("--fail-on-mismatch", dict(nargs="?", const=True, default=False, type=parse_bool))]),
          }


          def parser():
              top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
              sub = top.add_subparsers(dest="command", required=True)
              for name, (func, arguments) in COMMANDS.items():
                  command = sub.add_parser(name, help=func.__doc__)
                  command.set_defaults(func=func)
                  for flag, options in arguments:
                      command.add_argument(flag, **options)
              return top


          if __name__ == "__main__":
              arguments = parser().parse_args()
              arguments.func(arguments)

  - class: ResourceRequirement
    coresMin: 1
    ramMin: 2000
    outdirMin: 4000
  - class: ToolTimeLimit
    timelimit: 1800
hints:
  - class: DockerRequirement
    dockerPull: "python:3.11-slim"
  - class: swf:Sizing
    filesPerJob: 1
  - class: swf:Retry
    attempts: 3
baseCommand: [python3, swf_payload.py, reco]
arguments:
  - prefix: --reco
    valueFrom: "$(inputs.stf.nameroot).reco.json"
inputs:
  stf:
    type: "File"
    doc: "one STF file of the run's stream (consumed while the run is still taking data)"
    inputBinding: {prefix: --stf}
  detector:
    type: string
    default: "ecal"
    doc: "detector subsystem whose channels are reconstructed (one of ecal, hcal, tracker, pid, all)"
    inputBinding: {prefix: --detector}
  threshold:
    type: int
    default: 40
    doc: "ADC threshold; samples above it count as hits (integer in [0, 255])"
    inputBinding: {prefix: --threshold}
  tf_size_kb:
    type: int
    default: 4
    doc: "size of one time frame inside the STF file, in KiB (integer in [1, 1048576])"
    inputBinding: {prefix: --tf-size-kb}
outputs:
  reco:
    type: File
    doc: "per-STF reconstruction summary (hits, energy, occupancy histogram)"
    outputBinding:
      glob: "$(inputs.stf.nameroot).reco.json"
