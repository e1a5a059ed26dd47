"""The transfer set's cost curve (issue #29): how the teacher's pass (`xdner annotate`) and a
50/200 distillation (`xdner distil`, `configs/scale.yaml`'s short schedule) grow with the number
of transfer sentences, with the annotate settings of before #29 and the current defaults, on the
same sizes in one go.

One teacher is fine-tuned once (`OUT/teacher-run`) and copied into every size's run folder. Each
step runs in its own process (wall time, peak RSS from wait4); per size and setting the script
records sentences/s and windows/s of each step, the cache's bytes per token, the run folder's
disk, and writes `results/scale/scale.{json,md,png}` with a linear extrapolation to the paper's
7.2M sentences from the largest size (the log-log slopes show whether linear holds).

    python benchmarks/scale.py --sizes 1000,10000,100000           # on an otherwise idle machine
    python benchmarks/scale.py --sizes 1000,5000 --device cuda      # on a GPU: bf16 for "current"
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from _steps import disk_use, run_step  # benchmarks/_steps.py: this script's folder is on sys.path
from _common import DATA_ROOT, command_line, markdown_table, save_figure  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.io import read_json, write_json
from xtremedistil_ner.layout import CACHE, TEACHER, TIMINGS

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "configs" / "scale.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "scale"
PAPER_SENTENCES = 7_200_000
# The annotate settings before #29 (fp32 teacher at the teacher's evaluation batch size, however
# long its windows, fp16 hidden states at full width) and the defaults now (the package's own; on CUDA, bf16).
SETTINGS = {
    "before": ["annotate.precision=fp32", "annotate.batch_size=128", "annotate.batch_tokens=null", "annotate.hidden=fp16",
               "annotate.hidden_dims=null"],
    "current": [],
}


def device_env(device: str) -> dict[str, str]:
    """`--device cpu` hides any GPU from the steps (they would take one if they saw it)."""
    return {"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}


def cache_tokens(cache: Path) -> tuple[int, int]:
    """(windows, tokens) in a finished cache."""
    manifest = read_json(cache / "manifest.json")
    tokens = sum(int(np.load(cache / s / "offsets.npy")[-1]) for s in manifest["shards"])
    return manifest["windows"], tokens


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def measure(size: int, setting: str, args: argparse.Namespace, teacher: Path, languages: int) -> dict[str, Any]:
    out = args.out / f"{setting}-{size}"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(teacher, out / TEACHER)
    overrides = [f"data.transfer_per_lang={size // languages}", *SETTINGS[setting]]
    if setting == "current" and args.device == "cuda":
        overrides.append("annotate.precision=bf16")
    row: dict[str, Any] = {"size": size // languages * languages, "setting": setting}
    for step in ("annotate", "distil"):
        rec = run_step(step, CONFIG, out, args.data_root, overrides, device_env(args.device))
        if rec["exit"]:
            raise SystemExit(f"xdner {step} for {setting}-{size} failed (exit {rec['exit']})")
        row[step] = {"wall_s": rec["seconds"], "peak_rss_gib": rec["peak_rss_gib"]}
    windows, tokens = cache_tokens(out / CACHE)
    timings = read_json(out / TIMINGS)
    epochs = 2  # configs/scale.yaml: one representation and one logits epoch
    row["windows"], row["tokens"] = windows, tokens
    row["annotate"].update(pass_s=timings["annotate"], sentences_per_s=round(row["size"] / timings["annotate"], 1),
                           windows_per_s=round(windows / timings["annotate"], 1))
    row["distil"].update(stage_s=timings["distil"], windows_per_s=round(windows * epochs / timings["distil"], 1))
    row["cache_bytes_per_token"] = round(dir_bytes(out / CACHE) / tokens, 1)
    row["disk_gib"] = disk_use(out)
    manifest = read_json(out / CACHE / "manifest.json")
    row["format"], row["compiled"] = manifest.get("format", {}), manifest.get("compiled", False)
    shutil.rmtree(out / CACHE)  # the largest sizes' caches are not kept
    return row


def spread(rows: list[dict[str, Any]], setting: str, step: str) -> float:
    """Peak RSS of `step` at the largest size over the smallest, minus 1 (the issue asks for ±10%)."""
    mine = sorted((r for r in rows if r["setting"] == setting), key=lambda r: r["size"])
    return mine[-1][step]["peak_rss_gib"] / mine[0][step]["peak_rss_gib"] - 1


def slope(rows: list[dict[str, Any]], value) -> float:
    """The log-log slope of `value(row)` against size (1: linear)."""
    x = np.log([r["size"] for r in rows])
    y = np.log([max(value(r), 1e-9) for r in rows])
    return float(np.polyfit(x, y, 1)[0]) if len(rows) > 1 else math.nan


def extrapolate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """7.2M sentences at the largest size's per-sentence cost."""
    big = max(rows, key=lambda r: r["size"])
    k = PAPER_SENTENCES / big["size"]
    return {"from_size": big["size"], "annotate_hours": round(big["annotate"]["wall_s"] * k / 3600, 1),
            "distil_hours_per_epoch": round(big["distil"]["stage_s"] / 2 * k / 3600, 1),
            "cache_gib": round(big["cache_bytes_per_token"] * big["tokens"] * k / 2**30, 1),
            "slopes": {"annotate_time": round(slope(rows, lambda r: r["annotate"]["wall_s"]), 2),
                       "distil_time": round(slope(rows, lambda r: r["distil"]["wall_s"]), 2),
                       "annotate_peak_rss": round(slope(rows, lambda r: r["annotate"]["peak_rss_gib"]), 2),
                       "distil_peak_rss": round(slope(rows, lambda r: r["distil"]["peak_rss_gib"]), 2),
                       "disk": round(slope(rows, lambda r: r["disk_gib"]["total"]), 2)}}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("wall time (s)", [("annotate", lambda r: r["annotate"]["wall_s"]), ("distil", lambda r: r["distil"]["wall_s"])]),
              ("peak RSS (GiB)", [("annotate", lambda r: r["annotate"]["peak_rss_gib"]), ("distil", lambda r: r["distil"]["peak_rss_gib"])]),
              ("cache bytes per token", [("cache", lambda r: r["cache_bytes_per_token"])]),
              ("run folder on disk (GiB)", [("disk", lambda r: r["disk_gib"]["total"])])]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for ax, (title, series) in zip(axes, panels):
        for setting, style in (("before", "--"), ("current", "-")):
            mine = sorted((r for r in rows if r["setting"] == setting), key=lambda r: r["size"])
            for name, value in series:
                ax.plot([r["size"] for r in mine], [value(r) for r in mine], style, marker="o", label=f"{name}, {setting}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("transfer sentences")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def write_results(record: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "scale.json", record)
    rows = sorted(record["rows"], key=lambda r: (r["size"], r["setting"] != "before"))
    lines = ["# Transfer-set cost curve", "", f"`{record['command']}`", "", f"Machine: {record['machine']}. {record['note']}".rstrip(), "",
             "Annotate: the teacher's pass (`xdner annotate`), *wall* the whole process (data, tokenizer, teacher load), "
             "*pass* its own timing; distil: the 50/200 on one representation and one logits epoch.", ""]
    lines += markdown_table(
        ["sentences", "setting", "windows", "annotate wall s", "annotate sent/s (pass)", "annotate windows/s", "annotate peak RSS GiB",
         "distil wall s", "distil windows/s", "distil peak RSS GiB", "cache bytes/token", "run folder GiB"],
        [[f"{r['size']:,}", r["setting"] + (" (compiled)" if r.get("compiled") else ""), f"{r['windows']:,}", r["annotate"]["wall_s"], r["annotate"]["sentences_per_s"],
          r["annotate"]["windows_per_s"], r["annotate"]["peak_rss_gib"], r["distil"]["wall_s"], r["distil"]["windows_per_s"],
          r["distil"]["peak_rss_gib"], r["cache_bytes_per_token"], r["disk_gib"]["total"]] for r in rows])
    lines += ["", "## Current against before, same size", ""]
    pairs = [(b, c) for b in rows for c in rows if b["size"] == c["size"] and b["setting"] == "before" and c["setting"] == "current"]
    lines += markdown_table(["sentences", "annotate sent/s x", "cache bytes/token /", "annotate peak RSS x", "distil windows/s x"],
                            [[f"{b['size']:,}", f"{c['annotate']['sentences_per_s'] / b['annotate']['sentences_per_s']:.2f}",
                              f"{b['cache_bytes_per_token'] / c['cache_bytes_per_token']:.2f}",
                              f"{c['annotate']['peak_rss_gib'] / b['annotate']['peak_rss_gib']:.2f}",
                              f"{c['distil']['windows_per_s'] / b['distil']['windows_per_s']:.2f}"] for b, c in pairs])
    lines += ["", "## Peak RSS, largest size against smallest", ""]
    lines += markdown_table(["setting", "annotate", "distil"],
                            [[s] + [f"{spread(record['rows'], s, step):+.1%}" for step in ("annotate", "distil")] for s in record["extrapolation"]])
    lines += ["", f"## {PAPER_SENTENCES / 1e6:.1f}M sentences, extrapolated", "",
              "Linear in the sentences from the largest size measured (the log-log slopes, 1 = linear, say whether that holds).", ""]
    lines += markdown_table(["setting", "from", "annotate h", "distil h per epoch", "cache GiB", "slopes (annotate t, distil t, annotate RSS, distil RSS, disk)"],
                            [[s, f"{e['from_size']:,}", e["annotate_hours"], e["distil_hours_per_epoch"], e["cache_gib"],
                              ", ".join(str(v) for v in e["slopes"].values())] for s, e in record["extrapolation"].items()])
    (out / "scale.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot(record["rows"], out / "scale.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="transfer sentences, comma-separated (split evenly over the languages)")
    parser.add_argument("--settings", default="before,current")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/scale"), help="work folder (teacher and per-size runs)")
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="how the machine was (recorded with the results)")
    args = parser.parse_args()
    import yaml

    languages = len(yaml.safe_load(CONFIG.read_text())["languages"])
    base = args.out / "teacher-run"
    rec = run_step("teach", CONFIG, base, args.data_root, ["data.transfer_per_lang=1"], device_env(args.device))
    if rec["exit"]:
        raise SystemExit(f"xdner teach failed (exit {rec['exit']})")
    rows = [measure(int(size), setting, args, base / TEACHER, languages)
            for size in args.sizes.split(",") for setting in args.settings.split(",")]
    from xtremedistil_ner.report import machine_description

    argv = [a for i, a in enumerate(sys.argv[1:]) if "--note" not in (a, sys.argv[i])]  # the note is printed on its own
    record = {"command": command_line("benchmarks/scale.py", argv), "machine": machine_description(),
              "device": args.device, "note": args.note, "teacher_seconds": rec["seconds"], "rows": rows,
              "extrapolation": {s: extrapolate([r for r in rows if r["setting"] == s]) for s in args.settings.split(",")}}
    write_results(record, args.results)
    print((args.results / "scale.md").read_text(encoding="utf-8"))
    print(json.dumps(record["extrapolation"], indent=1))


if __name__ == "__main__":
    main()
