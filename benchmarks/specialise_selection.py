"""How per-language taggers specialised from a joint student should choose their stages, judged
on dev sentences they did not choose on (#24: on 100-sentence dev sets, keeping whichever
stage scored best fitted noise). Each language's dev set is split in two halves (alternate
sentences): the taggers are specialised choosing on half A, then the joint student and every
tagger are scored on half B. Rules: the default (a stage is kept unless dev F1 falls), `keep_confidence`,
`interpolate`, `anchor` and a learning rate for both stages at each level given; one distil step specialises every rule's taggers, so the
vocabulary's set-up is paid once. Test sentences are never read. The joint student was chosen
on the whole dev set, half B included, so the comparison leans its way a little.

Works on a copy of a finished run's teacher, cache and joint student (hard links: the run
itself is left as it is):

    python benchmarks/specialise_selection.py --run runs/wikiann48-lowres --out runs/selection --confidence 0.8 0.9 --interpolate 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from xtremedistil_ner.threads import configure_threads

configure_threads()  # before torch loads, as xdner does

from _common import command_line, markdown_table  # noqa: E402  (benchmarks/_common.py: this script's folder is on sys.path)
from xtremedistil_ner.config import load_config, specialise_schedule  # noqa: E402
from xtremedistil_ner.data.conll import Sentence  # noqa: E402
from xtremedistil_ner.distiller import FINAL  # noqa: E402
from xtremedistil_ner.encoding import encode  # noqa: E402
from xtremedistil_ner.io import read_json, write_json, write_text  # noqa: E402
from xtremedistil_ner.layout import CONFIG, JOINT, PROGRESS  # noqa: E402
from xtremedistil_ner.pipeline import Run  # noqa: E402
from xtremedistil_ner.scoring import logits_fn, predict_tags, score  # noqa: E402
from xtremedistil_ner.students import load_student  # noqa: E402

Rule = tuple[str, str, dict[str, float]]  # name, folder, stage keys


def rules_of(args: argparse.Namespace) -> list[Rule]:
    return [("default", "default", {}),
            *((f"keep_confidence {c}", f"confidence-{c}", {"keep_confidence": c}) for c in args.confidence),
            *((f"interpolate {w}", f"interpolate-{w}", {"interpolate": w}) for w in args.interpolate),
            *((f"lr {lr:g}", f"lr-{lr:g}", {"lr": lr}) for lr in args.lr),
            *((f"anchor {a:g}", f"anchor-{a:g}", {"anchor": a}) for a in args.anchor)]


def link_tree(src: Path, dst: Path) -> None:
    """`dst` as hard links to `src`'s files (nothing is copied, the run is not touched)."""
    for root, _, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            if not (target / f).exists():
                os.link(Path(root) / f, target / f)


def specialise(args: argparse.Namespace, rules: list[Rule]) -> tuple[Run, list[Sentence], dict[str, dict[str, Any]]]:
    """Every rule's taggers, each chosen on its language's dev half A, by one distil step (one
    vocabulary set-up for all rules); returns the run, dev half B and, per rule, each tagger's
    folder name and stage records by language."""
    for part in ("teacher", "cache", f"students/{args.joint}/{JOINT}"):
        link_tree(args.run / part, args.out / part)
    cfg = load_config(args.run / CONFIG, [f"output_dir={args.out}"] + ([f"data.root={args.data_root}"] if args.data_root else []))
    joint = next(s for s in cfg.students if s.name == args.joint)
    taggers = {name: dataclasses.replace(
        joint, name=folder, mode="per_language", from_student=args.joint,
        stages=[dataclasses.replace(st, **keys) for st in specialise_schedule()]) for name, folder, keys in rules}
    cfg.students, cfg.distil.gold_only_baseline = [joint, *taggers.values()], False
    run = Run(cfg)
    # Then the taggers alone: the joint student's record names the whole dev set, so the distil
    # step is not asked to check it against half A.
    run.cfg.students = list(taggers.values())
    run.teacher_inputs  # noqa: B018  (the teacher's record names the whole dev set: it was chosen on it)
    by_lang: dict[str, list[Sentence]] = {}
    for sent in run.corpus.dev:
        by_lang.setdefault(sent.lang, []).append(sent)
    half_b = [sent for sents in by_lang.values() for sent in sents[1::2]]
    run.__dict__["corpus"] = dataclasses.replace(run.corpus, dev=[sent for sents in by_lang.values() for sent in sents[0::2]])
    run.step("distil")
    records = {name: {lang: read_json(run.student_dir(scfg.name, lang) / PROGRESS)["history"] for lang in sorted(by_lang)}
               for name, scfg in taggers.items()}
    return run, half_b, {name: {"folder": scfg.name, "records": records[name]} for name, scfg in taggers.items()}


def score_half(run: Run, half_b: list[Sentence], model_dir: Path, lang: str | None) -> dict[str, Any]:
    """Dev half B's scores (one language's, or all) of the model in `model_dir`."""
    sentences = [s for s in half_b if lang is None or s.lang == lang]
    model = load_student(model_dir)
    windows = encode(sentences, run.tokenizer, run.cfg.teacher.max_length, None)
    pred = predict_tags(logits_fn(model), sentences, windows, model.config.id2label, run.pad_id, 256, run.acc, "dev half B")
    return score(sentences, pred)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder with the joint student and its cache")
    parser.add_argument("--out", type=Path, required=True, help="where the taggers of each rule go")
    parser.add_argument("--joint", default="bilstm-50-200", help="the joint student the taggers start from")
    parser.add_argument("--confidence", type=float, nargs="*", default=[], help="keep_confidence levels to compare")
    parser.add_argument("--interpolate", type=float, nargs="*", default=[], help="interpolate weights to compare")
    parser.add_argument("--lr", type=float, nargs="*", default=[], help="learning rates for both stages to compare (the default's: 5e-4)")
    parser.add_argument("--anchor", type=float, nargs="*", default=[], help="anchor weights (both stages) to compare")
    parser.add_argument("--data-root", help="the data root, if it moved since the run")
    args = parser.parse_args()
    rules = rules_of(args)
    if len({name for name, _, _ in rules}) < len(rules):
        parser.error("each --confidence, --interpolate, --lr and --anchor level once")
    run, half_b, taggers = specialise(args, rules)
    joint_b = score_half(run, half_b, args.run / "students" / args.joint / JOINT / FINAL, None)
    rows: dict[str, dict[str, Any]] = {}
    for name, tagger in taggers.items():
        for lang, history in tagger["records"].items():
            f1 = score_half(run, half_b, run.student_dir(tagger["folder"], lang) / FINAL, lang)[lang]["f1"]
            kept = [h["stage"] for h in history if not h.get("rolled_back")]
            rows.setdefault(lang, {"joint": joint_b[lang]["f1"], "sentences_b": joint_b[lang]["sentences"]})[name] = {
                "f1": f1, "kept": kept}
    names = [name for name, _, _ in rules]
    summary = {}
    for name in names:
        diffs = [rows[lang][name]["f1"] - rows[lang]["joint"] for lang in rows]
        summary[name] = {"mean_difference": sum(diffs) / len(diffs), "below_minus_0.5": sum(d < -0.5 for d in diffs),
                         "mean_abs_difference": sum(abs(d) for d in diffs) / len(diffs),
                         "stages_kept": sum(len(rows[lang][name]["kept"]) for lang in rows)}
    result = {"command": command_line("benchmarks/specialise_selection.py", sys.argv[1:]), "rules": names, "summary": summary,
              "languages": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "selection.json", result)
    lines = ["# Choosing a specialised tagger's stages: dev half A to choose, half B to judge", "",
             f"Command: `{result['command']}`", "",
             *markdown_table(["rule", "mean F1 vs joint (half B)", "mean absolute difference", "languages > 0.5 below", "stages kept"],
                             [[n, f"{s['mean_difference']:+.2f}", f"{s['mean_abs_difference']:.2f}", s["below_minus_0.5"], s["stages_kept"]]
                              for n, s in summary.items()]), "",
             *markdown_table(["language", "half-B sentences", "joint", *names],
                             [[lang, r["sentences_b"], f"{r['joint']:.2f}",
                               *(f"{r[n]['f1'] - r['joint']:+.2f} ({'+'.join(r[n]['kept']) or 'none'})" for n in names)]
                              for lang, r in sorted(rows.items())]), ""]
    write_text(args.out / "selection.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
