#!/usr/bin/env python3
"""Tiny calorimeter-calibration kit used by the example workflow (examples/calib.cwl).

STF files are text stand-ins for real super-time-frames, in the one STF format that
``swfflow daqsim`` writes (docs/messages.md, "STF files"): a header line
``# STF run=<run> seq=<n> ntf=<tfs> [key=value ...]``, then ``tf,channel,adc`` hit lines, then
optionally zero bytes up to the file's nominal size (a sparse hole), where reading stops.
Subcommands: reco, qa, merge, fit, checksum, integrity. Each writes JSON/text outputs in the
current directory (cwltool's output directory).
"""

import json
import math
import sys
import zlib
from pathlib import Path

TARGET_ADC = 100.0  # the ADC peak a perfectly calibrated channel should show
MAX_GAIN_DEVIATION = 0.2  # feedback flags channels whose gain is off by more than this


def read_stf(path):
    lines = _text_before_hole(path).splitlines()
    if not lines or not lines[0].startswith("# STF "):
        sys.exit(f"{path}: not an STF file (missing '# STF' header)")
    header = dict(item.split("=", 1) for item in lines[0][6:].split())
    hits = [tuple(int(x) for x in line.split(",")) for line in lines[1:] if line.strip()]
    return header, hits


def _text_before_hole(path, chunk_size=1 << 16):
    """The file's content up to its first zero byte (never reads a GB-sized hole)."""
    content = bytearray()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            end = chunk.find(b"\0")
            content += chunk if end < 0 else chunk[:end]
            if end >= 0:
                break
    return content.decode()


def reco(stf):
    header, hits = read_stf(stf)
    channels = {}
    for _tf, channel, adc in hits:
        entry = channels.setdefault(str(channel), {"n": 0, "sum": 0.0, "sum2": 0.0})
        entry["n"] += 1
        entry["sum"] += adc
        entry["sum2"] += adc * adc
    out = Path(Path(stf).name).with_suffix(".hist.json")
    out.write_text(json.dumps({"run": int(header["run"]), "seq": int(header["seq"]),
                               "channels": channels}, sort_keys=True, indent=1))


def qa(hist, min_hits):
    data = json.loads(Path(hist).read_text())
    dead = sorted(c for c, e in data["channels"].items() if e["n"] < int(min_hits))
    out = Path(Path(hist).name.replace(".hist.json", ".qa.json"))
    out.write_text(json.dumps({"seq": data["seq"], "channels": len(data["channels"]),
                               "low_occupancy": dead, "ok": not dead}, sort_keys=True, indent=1))


def merge(*hists):
    total, runs = {}, set()
    for hist in hists:
        data = json.loads(Path(hist).read_text())
        runs.add(data["run"])
        for channel, entry in data["channels"].items():
            acc = total.setdefault(channel, {"n": 0, "sum": 0.0, "sum2": 0.0})
            for key in acc:
                acc[key] += entry[key]
    if len(runs) != 1:
        sys.exit(f"merge: histograms of several runs {sorted(runs)}")
    Path("merged.hist.json").write_text(json.dumps(
        {"run": runs.pop(), "n_stf": len(hists), "channels": total}, sort_keys=True, indent=1))


def fit(merged, detector):
    data = json.loads(Path(merged).read_text())
    constants, flagged = {}, []
    for channel, entry in sorted(data["channels"].items(), key=lambda kv: int(kv[0])):
        mean = entry["sum"] / entry["n"]
        sigma = math.sqrt(max(entry["sum2"] / entry["n"] - mean * mean, 0.0))
        gain = TARGET_ADC / mean
        constants[channel] = {"gain": round(gain, 6), "mean_adc": round(mean, 3),
                              "sigma_adc": round(sigma, 3), "entries": entry["n"]}
        if abs(gain - 1.0) > MAX_GAIN_DEVIATION:
            flagged.append(channel)
    Path("constants.json").write_text(json.dumps(
        {"detector": detector, "run": data["run"], "constants": constants}, sort_keys=True, indent=1))
    Path("feedback.json").write_text(json.dumps(
        {"detector": detector, "run": data["run"], "n_stf": data["n_stf"],
         "flagged_channels": flagged, "status": "attention" if flagged else "good"},
        sort_keys=True, indent=1))


def checksum(*files):
    lines = []
    for name in files:
        value = zlib.adler32(Path(name).read_bytes()) & 0xFFFFFFFF
        lines.append(f"{value:08x}  {Path(name).name}")
    Path("checksums.txt").write_text("\n".join(lines) + "\n")


def integrity(constants, checksums):
    data = json.loads(Path(constants).read_text())
    bad = [c for c, v in data["constants"].items() if not math.isfinite(v["gain"]) or v["gain"] <= 0]
    listed = Path(checksums).read_text().split()
    report = {"run": data["run"], "channels": len(data["constants"]), "bad_channels": bad,
              "checksummed_files": len(listed) // 2, "valid": not bad}
    Path("validation.json").write_text(json.dumps(report, sort_keys=True, indent=1))
    if bad:
        sys.exit(f"integrity: bad constants for channels {bad}")


if __name__ == "__main__":
    commands = {"reco": reco, "qa": qa, "merge": merge, "fit": fit, "checksum": checksum,
                "integrity": integrity}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: calibkit.py {{{'|'.join(commands)}}} ARGS...")
    commands[sys.argv[1]](*sys.argv[2:])
