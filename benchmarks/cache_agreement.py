"""How far a transfer cache written with other annotate settings (a faster teacher pass, a
compact hidden-state format) is from a reference cache of the same teacher and windows (#29):
argmax agreement and the largest and mean absolute difference of the teacher's logits, and the
relative RMS error of the hidden states the students are trained against, over every window.

    python benchmarks/cache_agreement.py --reference runs/w6-old/cache --other runs/w6-new/cache --out benchmarks/results/scale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from _common import command_line, markdown_table  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.cache import TransferCache
from xtremedistil_ner.io import write_json


def compare(reference: TransferCache, other: TransferCache) -> dict[str, float]:
    if len(reference) != len(other):
        raise SystemExit(f"the caches hold {len(reference)} and {len(other)} windows: not the same transfer set")
    agree = tokens = 0
    max_diff, abs_sum, err_sq, ref_sq = 0.0, 0.0, 0.0, 0.0
    for j in range(len(reference)):
        a, b = reference[j], other[j]
        if not np.array_equal(a["input_ids"], b["input_ids"]):
            raise SystemExit(f"window {j} differs between the caches: not the same transfer set")
        la, lb = a["teacher_logits"].astype(np.float32), b["teacher_logits"].astype(np.float32)
        agree += int((la.argmax(-1) == lb.argmax(-1)).sum())
        tokens += len(la)
        diff = np.abs(la - lb)
        max_diff = max(max_diff, float(diff.max()))
        abs_sum += float(diff.sum())
        ha, hb = a["teacher_hidden"].astype(np.float64), b["teacher_hidden"].astype(np.float64)
        err_sq += float(((ha - hb) ** 2).sum())
        ref_sq += float((ha**2).sum())
    return {"windows": len(reference), "tokens": tokens, "argmax_agreement": agree / tokens, "logit_max_abs_diff": max_diff,
            "logit_mean_abs_diff": abs_sum / (tokens * reference.manifest["num_labels"]),
            "hidden_relative_rms_error": (err_sq / ref_sq) ** 0.5,
            "bytes_per_token": {"reference": reference.manifest.get("bytes_per_token"), "other": other.manifest.get("bytes_per_token")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a cache folder (e.g. the one before #29's settings)")
    parser.add_argument("--other", type=Path, required=True, action="append", help="cache folder(s) to compare with it")
    parser.add_argument("--out", type=Path, required=True, help="writes cache-agreement.{json,md} here")
    args = parser.parse_args()
    reference = TransferCache(args.reference)
    rows = {}
    for path in args.other:
        other = TransferCache(path)
        rows[str(path)] = {"format": other.manifest.get("format"), **compare(reference, other)}
    record = {"command": command_line("benchmarks/cache_agreement.py", sys.argv[1:]),
              "reference_format": reference.manifest.get("format"), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "cache-agreement.json", record)
    lines = ["# Cache agreement", "", f"`{record['command']}`", "", f"Reference format: `{record['reference_format']}`.", ""]
    lines += markdown_table(["cache", "format", "windows", "tokens", "argmax agreement", "max |logit diff|", "mean |logit diff|",
                             "hidden relative RMS error", "bytes/token"],
                            [[Path(p).parent.name, f"`{r['format']}`", f"{r['windows']:,}", f"{r['tokens']:,}", f"{100 * r['argmax_agreement']:.3f}%",
                              f"{r['logit_max_abs_diff']:.3f}", f"{r['logit_mean_abs_diff']:.4f}", f"{r['hidden_relative_rms_error']:.4f}",
                              f"{r['bytes_per_token']['reference']} -> {r['bytes_per_token']['other']}"] for p, r in rows.items()])
    (args.out / "cache-agreement.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
