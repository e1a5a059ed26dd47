"""Vocabulary coverage (#24, item 2): a teacher piece no transfer or labeled sentence contains has
no row in the student and reads the unknown row. Per finished run, for one student, this scores
dev and test F1 per language, and the share of subwords with no row, for each lever:
- `unknown`: as trained;
- `nearest`: each such piece pointed at the row of its nearest kept piece in the teacher's
  embedding space (`students.map_to_nearest`: no parameters, only `id_map` entries);
- `unigram-K`: per Unicode script of the run's languages, the K unseen pieces most probable under
  the teacher tokenizer's own unigram model get rows of their own (K x embedding_dim parameters),
  initialised as the student's rows were (a row no training window contains gets no gradient, so
  this is the student that training with those rows gives, up to the PCA basis);
- `unigram-K+nearest`: both.
The lever with the best dev macro F1 is named; test F1 is reported, never used to choose.

Only the pieces that occur in the dev and test text are remapped by `nearest`: the others cannot
change a prediction, so the scores are those of mapping every piece, in seconds instead of minutes.

    python benchmarks/vocab_coverage.py --run runs/w6-1k --run runs/w6-v2 --student bilstm-50-200 --k 2000 --k 10000
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from _common import DATA_ROOT, FinishedRun, command_line, markdown_table, save_figure  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.encoding import encode, special_ids
from xtremedistil_ner.scoring import logits_fn, predict_tags, score
from xtremedistil_ner.io import read_json, write_json
from xtremedistil_ner.languages import load_language
from xtremedistil_ner.layout import FINAL
from xtremedistil_ner.students import load_student, map_to_nearest

RESULTS = Path(__file__).resolve().parent / "results" / "vocab-coverage"
SPLITS = ("dev", "test")


def piece_script(piece: str) -> str:
    """The Unicode script of a piece's first letter (`LATIN`, `CYRILLIC`, `CJK`, ...), or
    `COMMON` for pieces without letters (digits, punctuation), which every script may use."""
    for ch in piece.lstrip("\u2581"):
        if ch.isalpha():
            try:
                return unicodedata.name(ch).split()[0]
            except ValueError:
                return "UNKNOWN"
    return "COMMON"


SCRIPT_NAMES = {"Han": ("CJK",), "Kana": ("HIRAGANA", "KATAKANA"), "Han+Kana": ("CJK", "HIRAGANA", "KATAKANA")}


def run_scripts(languages: list[str]) -> set[str]:
    """The Unicode script names of the run's languages, from their language files."""
    out: set[str] = set()
    for lang in languages:
        for part in load_language(lang).script.split("+"):
            out.update(SCRIPT_NAMES.get(part, (part.upper(),)))
    return out


def unigram_unseen(tokenizer_json: Path, known: np.ndarray, scripts: set[str], k: int) -> dict[str, np.ndarray]:
    """Per script of the run (and `COMMON`), the `k` teacher pieces the student has no row for
    with the highest unigram log-probability in the teacher's own tokenizer model."""
    vocab = read_json(tokenizer_json)["model"]["vocab"]
    by_script: dict[str, list[tuple[float, int]]] = {}
    for i, (piece, log_prob) in enumerate(vocab):
        if i < len(known) and not known[i]:
            script = piece_script(piece)
            if script in scripts or script == "COMMON":
                by_script.setdefault(script, []).append((log_prob, i))
    return {s: np.array([i for _, i in sorted(c, reverse=True)[:k]], dtype=np.int64) for s, c in by_script.items()}


def add_pca_rows(student: torch.nn.Module, ids: np.ndarray, teacher_emb: torch.Tensor) -> None:
    """Give teacher `ids` rows of their own, initialised as the student's own rows were
    (`pca_embeddings`: the kept pieces' principal components, same centring and scale). A row
    that no training window contains gets no gradient, so this is the student that training
    with these rows would have given, up to the basis (fitted on the kept pieces only)."""
    id_map = student.id_map
    kept = torch.nonzero(id_map >= 2).squeeze(1)
    kept = kept[torch.argsort(id_map[kept])]
    module = student.get_input_embeddings()
    emb = module.weight
    sub = teacher_emb[kept].float()
    mean = sub.mean(0, keepdim=True)
    k = min(emb.shape[1], sub.shape[1], max(1, sub.shape[0] - 1))
    _, _, v = torch.linalg.svd(sub - mean, full_matrices=False)
    scale = ((sub - mean) @ v[:k].T).std().clamp_min(1e-6)
    extra = torch.zeros(len(ids), emb.shape[1])
    extra[:, :k] = ((teacher_emb[torch.as_tensor(ids)].float() - mean) @ v[:k].T) / scale
    module.weight = torch.nn.Parameter(torch.cat([emb.detach(), extra]))
    module.num_embeddings = module.weight.shape[0]
    id_map[torch.as_tensor(ids)] = torch.arange(emb.shape[0], emb.shape[0] + len(ids))
    student.config.vocab_size = emb.shape[0] + len(ids)


def lever_names(ks: list[int]) -> list[str]:
    return ["unknown", "nearest", *[f"unigram-{k}" for k in ks], *[f"unigram-{k}+nearest" for k in ks]]


def measure(run: FinishedRun, name: str, ks: list[int]) -> dict[str, Any]:
    tok = run.tokenizer
    pad_id = special_ids(tok)[2]
    sents = {"dev": run.corpus.dev, "test": run.test_sentences()}
    windows = {split: encode(s, tok, run.cfg.teacher.max_length) for split, s in sents.items()}
    eval_ids = torch.as_tensor(np.unique(np.concatenate([w.input_ids for ws in windows.values() for w in ws])), dtype=torch.long)
    teacher_emb = run.load_teacher().get_input_embeddings().weight.detach()
    report = run.report()
    out: dict[str, Any] = {"run": run.name, "student": name, "teacher_test_f1": report["models"]["teacher"]["test_f1"], "levers": {}}
    acc = Accelerator(cpu=True)
    scripts = run_scripts(run.cfg.languages)
    special = torch.as_tensor(tok.all_special_ids)
    for lever in lever_names(ks):
        student = load_student(run.student_dir(name) / FINAL)
        if not bool((~torch.isin(torch.nonzero(student.id_map == 1).flatten(), special)).any()):
            raise SystemExit(f"{run.root}: {name} already gives every teacher piece a row or a neighbour's (unseen: nearest); "
                             "the levers compare against a student trained with students[].unseen: unknown")
        if lever.startswith("unigram-"):
            k = int(lever.split("-")[1].split("+")[0])
            extra = unigram_unseen(run.teacher_dir / "tokenizer.json", (student.id_map >= 2).numpy(), scripts, k)
            add_pca_rows(student, np.concatenate(list(extra.values())), teacher_emb)
        if lever.endswith("nearest"):
            map_to_nearest(student, eval_ids[student.id_map[eval_ids] == 1], teacher_emb)
        row: dict[str, Any] = {"parameters": student.num_parameters()}
        for split in SPLITS:
            by_lang: dict[str, list[np.ndarray]] = {}
            for w in windows[split]:
                by_lang.setdefault(sents[split][w.sent].lang, []).append(w.input_ids[1:-1])
            row[f"unknown_{split}_subwords_pct"] = {
                lang: 100 * float((student.id_map.numpy()[np.concatenate(ids)] == 1).mean()) for lang, ids in by_lang.items()}
            pred = predict_tags(logits_fn(student), sents[split], windows[split], student.config.id2label, pad_id, 256, acc,
                                f"{name} {lever} {split}")
            row[f"{split}_f1"] = {lang: round(v["f1"], 2) for lang, v in score(sents[split], pred).items()}
        out["levers"][lever] = row
    out["chosen_on_dev"] = max(out["levers"], key=lambda lv: out["levers"][lv]["dev_f1"]["macro"])
    return out


def _pct(f1: float, teacher: float) -> str:
    return f"{100 * f1 / teacher:.1f}%" if teacher else "–"


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = ["# Vocabulary coverage", "", f"`{command}`", "",
             "Levers for teacher pieces that no transfer or labeled sentence contains (see the script's docstring): *unknown* "
             "(as trained), *nearest* (the nearest kept piece's row, no parameters), *unigram-K* (rows for the K most probable "
             "unseen pieces per script), and both. The lever is chosen on dev macro F1; test is reported only.", ""]
    for r in rows:
        langs = [l for l in r["teacher_test_f1"] if l != "macro"]
        teacher = r["teacher_test_f1"]
        levers = r["levers"]
        lines += [f"## {r['run']}: {r['student']}", "", f"Chosen on dev: **{r['chosen_on_dev']}**.", ""]
        lines += markdown_table(
            ["lever", "parameters", "dev macro F1", "test macro F1", "of teacher (test)", "unknown test subwords (mean)"],
            [[lv, f"{v['parameters'] / 1e6:.2f}M", v["dev_f1"]["macro"], v["test_f1"]["macro"], _pct(v["test_f1"]["macro"], teacher["macro"]),
              f"{np.mean(list(v['unknown_test_subwords_pct'].values())):.2f}%"] for lv, v in levers.items()])
        lines += ["", "Per language, test F1 (unknown test subwords in brackets):", ""]
        lines += markdown_table(
            ["language", "teacher", *levers],
            [[lang, teacher[lang], *[f"{v['test_f1'][lang]} ({v['unknown_test_subwords_pct'][lang]:.1f}%)" for v in levers.values()]]
             for lang in langs])
        lines += [""]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Per language and lever: the test F1 gained over `unknown` against the share of test
    subwords the student as trained has no row for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(6 * len(rows), 4.5), squeeze=False)
    for ax, r in zip(axes[0], rows):
        langs = [l for l in r["teacher_test_f1"] if l != "macro"]
        base = r["levers"]["unknown"]
        x = [base["unknown_test_subwords_pct"][l] for l in langs]
        for lever, v in r["levers"].items():
            if lever != "unknown":
                ax.scatter(x, [v["test_f1"][l] - base["test_f1"][l] for l in langs], label=lever, s=18)
        for xi, lang in zip(x, langs):
            ax.annotate(lang, (xi, 0), fontsize=7, xytext=(0, -10), textcoords="offset points", ha="center")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{r['run']}: {r['student']}", fontsize=9)
        ax.set_xlabel("test subwords the trained student has no row for (%)")
        ax.set_ylabel("test F1 gained over unknown (points)")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", required=True, help="a finished run folder (repeatable)")
    parser.add_argument("--student", default="bilstm-50-200")
    parser.add_argument("--k", type=int, action="append", default=[], help="unigram-K budget per script (repeatable)")
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = [measure(FinishedRun.open(path, args.data_root), args.student, args.k) for path in args.run]
    command = command_line("benchmarks/vocab_coverage.py", sys.argv[1:])
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "vocab-coverage.json", {"command": command, "rows": rows})
    (args.results / "vocab-coverage.md").write_text(markdown(rows, command), encoding="utf-8")
    plot(rows, args.results / "vocab-coverage.png")
    print((args.results / "vocab-coverage.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
