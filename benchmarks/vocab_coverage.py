"""Vocabulary coverage (#24, item 2): a teacher piece no transfer or labeled sentence contains has
no row in the student and reads the unknown row. Per finished run, for one student, this scores
test F1 per language as trained (`unknown`) and with each such piece pointed at the row of its
nearest kept piece in the teacher's embedding space (`nearest`, `students.map_to_nearest`: no
parameters, only `id_map` entries), with the share of test subwords that are unknown.

Only the pieces that occur in the test text are remapped: the others cannot change a test
prediction, so the scores are those of mapping every piece, in seconds instead of minutes.

    python benchmarks/vocab_coverage.py --run runs/w6-1k --run runs/w6-new --student bilstm-50-200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from xtremedistil_ner.benchmarking import FinishedRun, markdown_table, save_figure
from xtremedistil_ner.encoding import encode, special_ids
from xtremedistil_ner.evaluate import logits_fn, predict_tags, score
from xtremedistil_ner.io import write_json
from xtremedistil_ner.layout import FINAL
from xtremedistil_ner.students import load_student, map_to_nearest

RESULTS = Path(__file__).resolve().parent / "results" / "vocab-coverage"
LEVERS = ("unknown", "nearest")


def measure(run: FinishedRun, name: str) -> dict[str, Any]:
    tok = run.tokenizer
    pad_id = special_ids(tok)[2]
    sents = run.test_sentences()
    windows = encode(sents, tok, run.cfg.teacher.max_length)
    teacher_emb = run.load_teacher().get_input_embeddings().weight.detach()
    report = run.report()
    out: dict[str, Any] = {"run": run.name, "student": name, "teacher_test_f1": report["models"]["teacher"]["test_f1"], "levers": {}}
    acc = Accelerator(cpu=True)
    for lever in LEVERS:
        student = load_student(run.student_dir(name) / FINAL)
        by_lang: dict[str, list[np.ndarray]] = {}
        for w in windows:
            by_lang.setdefault(sents[w.sent].lang, []).append(w.input_ids[1:-1])
        unknown = {lang: 100 * float((student.id_map.numpy()[np.concatenate(ids)] == 1).mean()) for lang, ids in by_lang.items()}
        if lever == "nearest":
            test_ids = torch.as_tensor(np.unique(np.concatenate([w.input_ids for w in windows])), dtype=torch.long)
            map_to_nearest(student, test_ids[student.id_map[test_ids] == 1], teacher_emb)
        pred = predict_tags(logits_fn(student), sents, windows, student.config.id2label, pad_id, 256, acc, f"{name} {lever}")
        f1 = {lang: round(v["f1"], 2) for lang, v in score(sents, pred).items()}
        out["levers"][lever] = {"test_f1": f1, "unknown_test_subwords_pct": unknown, "parameters": student.num_parameters()}
    return out


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = ["# Vocabulary coverage", "", f"`{command}`", "",
             "Test F1 of each run's student as trained (*unknown*: pieces it has no row for read the unknown row) and with those "
             "pieces pointed at their nearest kept piece (*nearest*), the share of test subwords it has no row for, and its share "
             "of the teacher's F1.", ""]
    for r in rows:
        langs = [l for l in r["teacher_test_f1"] if l != "macro"]
        teacher = r["teacher_test_f1"]
        lines += [f"## {r['run']}: {r['student']}", ""]
        rows_md = []
        for lang in [*langs, "macro"]:
            u, n = r["levers"]["unknown"], r["levers"]["nearest"]
            unk = u["unknown_test_subwords_pct"].get(lang)
            rows_md.append([lang, f"{unk:.2f}%" if unk is not None else "", teacher[lang], u["test_f1"][lang], n["test_f1"][lang],
                            f"{n['test_f1'][lang] - u['test_f1'][lang]:+.2f}",
                            f"{100 * u['test_f1'][lang] / teacher[lang]:.1f}%" if teacher[lang] else "–",
                            f"{100 * n['test_f1'][lang] / teacher[lang]:.1f}%" if teacher[lang] else "–"])
        lines += markdown_table(["language", "unknown test subwords", "teacher", "F1 unknown", "F1 nearest", "change",
                                 "of teacher (unknown)", "of teacher (nearest)"], rows_md)
        lines += ["", f"Parameters: {r['levers']['unknown']['parameters'] / 1e6:.2f}M with either lever.", ""]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        langs = [l for l in r["teacher_test_f1"] if l != "macro"]
        x = [r["levers"]["unknown"]["unknown_test_subwords_pct"][l] for l in langs]
        y = [r["levers"]["nearest"]["test_f1"][l] - r["levers"]["unknown"]["test_f1"][l] for l in langs]
        ax.scatter(x, y, label=r["run"])
        for xi, yi, lang in zip(x, y, langs):
            ax.annotate(lang, (xi, yi), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("test subwords the student has no row for (%)")
    ax.set_ylabel("test F1, nearest - unknown (points)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", required=True, help="a finished run folder (repeatable)")
    parser.add_argument("--student", default="bilstm-50-200")
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ner"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = [measure(FinishedRun.open(path, args.data_root), args.student) for path in args.run]
    command = " ".join(["python", "benchmarks/vocab_coverage.py", *sys.argv[1:]])
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "vocab-coverage.json", {"command": command, "rows": rows})
    (args.results / "vocab-coverage.md").write_text(markdown(rows, command), encoding="utf-8")
    plot(rows, args.results / "vocab-coverage.png")
    print((args.results / "vocab-coverage.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
