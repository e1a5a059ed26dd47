"""What a user would pick instead (#17): spaCy's CNN NER and flair's BiLSTM-CRF trained on the
same labeled sentences as a finished wikiann6 low-resource run, and its teacher deployed as it
is through `transformers.pipeline`, side by side with the run's distilled students (PyTorch and
ONNX int8). Every system is scored with the package's seqeval scorer (strict IOB2, word level)
on the run's test sentences, gold tokens in; and timed end to end on the same raw texts (test
sentences, tokens joined by spaces: text in, entities out, tokenisation included) at batch
sizes 1 and 64, each system in its own process with the same thread cap (spaCy's CPU ops
run on one thread of it). Writes
`benchmarks/results/peers/peers.{json,md,png}`.

    pip install -e '.[bench]'                          # spaCy
    python -m venv .venv-flair && .venv-flair/bin/pip install torch==2.13.0 flair
    python benchmarks/peers.py --run runs/wikiann6-lowres --work runs/peers --flair-python .venv-flair/bin/python
    python benchmarks/peers.py --run runs/wikiann6-lowres --work runs/peers --reuse    # tables and plot only

The peers:
- spaCy: `spacy init config --lang xx --pipeline ner --optimize efficiency` (its CPU defaults),
  trained with `spacy train` on the run's labeled sentences, early stopping on the run's dev
  sentences (spaCy's own patience). ONE multilingual `xx` pipeline for all the run's languages,
  as our students are one joint model: same data, same deployment shape (a per-language
  pipeline would need as many models for the same text).
- flair: `benchmarks/peers_flair.py`, in its own environment (flair requires transformers<5), on a
  budget this machine affords (`FLAIR_BUDGET`: at most 50 epochs, selection on the first 1,000 dev
  sentences of each language).
- the teacher: `pipeline("token-classification", aggregation_strategy="first")` for speed; its
  F1 is the run's own evaluation of it (same scorer and test sentences, gold tokens).
Ours: the run's students through `Tagger` (raw text -> entities) in PyTorch, and exported to ONNX
fp32 and int8, run by the torch-free runtime (`xdner_runtime.Tagger`, what `Tagger.load(DIR,
onnx=...)` gives); training cost is each student's distillation time plus the teacher's
fine-tuning and annotation, which every student of the run shares, stated apart. A peer without
a result (flair needs its own environment) is left out of the table, and the table says so.

The timings are ratios within one run: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _peer_protocol import BATCH1_TEXTS, BATCH_SIZES, read_jsonl, throughput, write_result  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "peers"
THROUGHPUT_TEXTS_PER_LANG = 200
PEERS = ("spacy", "flair", "teacher")
GRAPHS = ("onnx", "int8")  # each student also exported (fp32, int8) and run by the torch-free runtime
# flair's defaults (up to 100 epochs, each scored on every dev sentence: 2.3 min an epoch for
# wikiann6's 51k on 2 cores) would take hours here; its budget, stated in its settings (on
# wikiann6 its dev F1 still rose at epoch 20 of a 30-epoch cap, at flair's first learning rate):
FLAIR_BUDGET = ["--max-epochs", "50", "--dev-per-lang", "1000"]
SMOKE = {"spacy": {"training.max_steps": 120, "training.eval_frequency": 40}, "flair": ["--max-epochs", "2"]}


def students_of(run_dir: Path) -> list[str]:
    """The run's joint distilled students (not its gold-only baseline, nor per-language taggers:
    the peers are one model for every language), in the report's order."""
    from _common import FinishedRun

    models = FinishedRun.open(run_dir).report()["models"]
    return [name for name, m in models.items() if name != "teacher" and "baseline_of" not in m and m.get("mode", "joint") == "joint"]


def systems_of(run_dir: Path) -> list[str]:
    students = students_of(run_dir)
    return [*PEERS, *students, *(f"{s}-{graph}" for graph in GRAPHS for s in students)]


# -- the exchange folder ------------------------------------------------------------------------
def prepare(run_dir: Path, work: Path, data_root: str) -> None:
    """The run's labeled, dev and test sentences as JSONL and the throughput texts, for every worker."""
    from _common import FinishedRun

    corpus = FinishedRun.open(run_dir, data_root).corpus
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        lines = [json.dumps({"lang": s.lang, "tokens": s.tokens, "tags": s.tags}, ensure_ascii=False) for s in getattr(corpus, split)]
        (data / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    by_lang = {lang: [" ".join(s.tokens) for s in corpus.test if s.lang == lang][:THROUGHPUT_TEXTS_PER_LANG] for lang in corpus.languages}
    # Languages interleaved, as many texts from each as the smallest test set has (up to 200).
    texts = [t for group in zip(*by_lang.values()) for t in group]
    (data / "texts.json").write_text(json.dumps({"texts": texts}, ensure_ascii=False), encoding="utf-8")


def texts_of(work: Path) -> list[str]:
    return json.loads((work / "data" / "texts.json").read_text(encoding="utf-8"))["texts"]


def timed(tag: Callable[[list[str]], list[list[tuple[str, int, int]]]], work: Path) -> dict[str, Any]:
    return {str(b): throughput(tag, texts_of(work), b) for b in BATCH_SIZES}


# -- workers (each in its own process) -----------------------------------------------------------
def spacy_worker(work: Path, smoke: bool) -> None:
    import spacy
    from spacy.cli.init_config import init_config
    from spacy.cli.train import train
    from spacy.tokens import Doc, DocBin

    out = work / "spacy"
    out.mkdir(parents=True, exist_ok=True)
    nlp = spacy.blank("xx")
    for split in ("train", "dev"):
        db = DocBin()
        for r in read_jsonl(work / "data" / f"{split}.jsonl"):
            db.add(Doc(nlp.vocab, words=r["tokens"], ents=r["tags"]))
        db.to_disk(out / f"{split}.spacy")
    config = init_config(lang="xx", pipeline=["ner"], optimize="efficiency", gpu=False)
    config.to_disk(out / "config.cfg")
    trained = out / "training.json"  # a pipeline trained before is reused, so its timing can be redone alone
    if trained.is_file() and (out / "model" / "model-best").is_dir():
        seconds = json.loads(trained.read_text(encoding="utf-8"))["seconds"]
    else:
        t0 = time.perf_counter()
        overrides = {"paths.train": str(out / "train.spacy"), "paths.dev": str(out / "dev.spacy"), **(SMOKE["spacy"] if smoke else {})}
        train(out / "config.cfg", out / "model", overrides=overrides)
        seconds = time.perf_counter() - t0
        trained.write_text(json.dumps({"seconds": seconds}), encoding="utf-8")
    nlp = spacy.load(out / "model" / "model-best")
    docs = nlp.pipe((Doc(nlp.vocab, words=r["tokens"]) for r in read_jsonl(work / "data" / "test.jsonl")), batch_size=256)
    tags = [[t.ent_iob_ + "-" + t.ent_type_ if t.ent_iob_ in ("B", "I") else "O" for t in doc] for doc in docs]

    def tag(texts: list[str]) -> list[list[tuple[str, int, int]]]:
        docs = [nlp(texts[0])] if len(texts) == 1 else list(nlp.pipe(texts, batch_size=len(texts)))
        return [[(e.label_, e.start_char, e.end_char) for e in d.ents] for d in docs]

    meta = json.loads((out / "model" / "model-best" / "meta.json").read_text(encoding="utf-8"))
    params = sum(node.get_param(name).size for _, proc in nlp.pipeline if hasattr(proc, "model")
                 for node in proc.model.walk() for name in node.param_names if node.has_param(name))
    training = config["training"]
    write_result(out, {
        "system": "spaCy CNN NER (xx)", "versions": {"spacy": spacy.__version__},
        "settings": {"config": "spacy init config --lang xx --pipeline ner --optimize efficiency (CPU)", "pipeline": nlp.pipe_names,
                     **{k: training[k] for k in ("max_epochs", "max_steps", "patience", "eval_frequency")},
                     **(SMOKE["spacy"] if smoke else {}),
                     "selection": "model-best: the best dev ents_f", "threads": "spaCy's own (single-threaded CPU ops)"},
        "training": {"seconds": seconds, "dev_ents_f_of_kept_model": meta.get("performance", {}).get("ents_f")},
        "parameters": params, "test_tags": tags, "throughput": timed(tag, work),
    })


def teacher_worker(work: Path, run_dir: Path) -> None:
    import torch
    from transformers import pipeline

    teacher = run_dir / "teacher"
    ner = pipeline("token-classification", model=str(teacher), aggregation_strategy="first", device=-1)

    def tag(texts: list[str]) -> list[list[tuple[str, int, int]]]:
        found = ner(texts, batch_size=len(texts))
        return [[(e["entity_group"], e["start"], e["end"]) for e in f] for f in found]

    write_result(work / "teacher", {
        "system": "teacher, transformers.pipeline", "versions": {"torch": torch.__version__},
        "settings": {"aggregation_strategy": "first", "threads": torch.get_num_threads()},
        "parameters": ner.model.num_parameters(), "throughput": timed(tag, work),
    })


def graph_of(system: str) -> str | None:
    """"onnx" or "int8" for a student's exported graph (`NAME-onnx`, `NAME-int8`), else None."""
    return next((g for g in GRAPHS if system.endswith(f"-{g}")), None)


def student_of(system: str) -> str:
    graph = graph_of(system)
    return system.removesuffix(f"-{graph}") if graph else system


def student_worker(work: Path, run_dir: Path, system: str) -> None:
    import torch

    from xtremedistil_ner.export import export_onnx, quantize_int8
    from xtremedistil_ner.students import load_student
    from xtremedistil_ner.tagger import Tagger

    name, graph = student_of(system), graph_of(system)
    model_dir = run_dir / "students" / name / "joint" / "model"
    onnx = None
    if graph:
        onnx = export_onnx(load_student(model_dir), work / system / "model.onnx")
        if graph == "int8":
            onnx = quantize_int8(onnx, work / system / "model.int8.onnx")
    # With a graph, `Tagger.load` gives the torch-free runtime's Tagger; torch is loaded here
    # only to export it, and idles while the graph is timed.
    tagger = Tagger.load(model_dir, batch_size=256, onnx=onnx)
    tags = tagger.tag_tokens([r["tokens"] for r in read_jsonl(work / "data" / "test.jsonl")])

    def tag(texts: list[str]) -> list[list[tuple[str, int, int]]]:
        tagger.batch_size = len(texts)
        return [[(e["label"], e["start"], e["end"]) for e in found] for found in tagger(texts)]

    write_result(work / system, {
        "system": f"{name} (ONNX {'fp32' if graph == 'onnx' else graph}, xdner_runtime)" if graph else f"{name} (PyTorch fp32), Tagger",
        "versions": {"torch": torch.__version__, **({"onnxruntime": version("onnxruntime")} if onnx else {})},
        "settings": {"threads": torch.get_num_threads(), **({"onnx_mb": round(onnx.stat().st_size / 2**20, 2)} if onnx else {})},
        "parameters": load_student(model_dir).num_parameters(), "test_tags": tags, "throughput": timed(tag, work),
    })


def run_worker(system: str, work: Path, run_dir: Path, threads: int, flair_python: str | None, smoke: bool) -> None:
    """One system in its own process, every one with the same thread count."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PEERS_THREADS": str(threads)}
    if system == "flair":
        if not flair_python:
            raise SystemExit("flair runs in its own environment: pass --flair-python (see benchmarks/peers_flair.py)")
        cmd = [flair_python, str(ROOT / "benchmarks" / "peers_flair.py"), "--work", str(work), *FLAIR_BUDGET, *(SMOKE["flair"] if smoke else [])]
    else:
        cmd = [sys.executable, __file__, "--worker", system, "--work", str(work), "--run", str(run_dir), *(["--smoke"] if smoke else [])]
    (work / system).mkdir(parents=True, exist_ok=True)
    with open(work / system / "log.txt", "w", encoding="utf-8") as log:
        done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{system}: the worker failed (exit {done.returncode}); see {work / system / 'log.txt'}")


# -- the report ----------------------------------------------------------------------------------
def collect(run_dir: Path, work: Path, data_root: str) -> dict[str, Any]:
    from _common import FinishedRun, command_line
    from xtremedistil_ner.scoring import score
    from xtremedistil_ner.report import machine_description

    run = FinishedRun.open(run_dir, data_root)
    report, test = run.report(), run.corpus.test
    timings = report["timings"]
    rows = []
    students = students_of(run_dir)
    missing = [s for s in systems_of(run_dir) if not (work / s / "result.json").exists()]
    if any(s not in PEERS for s in missing):
        raise SystemExit(f"{work}: no results yet for {', '.join(missing)}; run them with --systems {','.join(missing)}")
    for system in (s for s in systems_of(run_dir) if s not in missing):
        result = json.loads((work / system / "result.json").read_text(encoding="utf-8"))
        if system == "teacher":
            f1 = report["models"]["teacher"]["test_f1"]
            cost = {"seconds": timings.get("teach"), "note": "fine-tuning"}
        else:
            tags = result.pop("test_tags")
            if [len(t) for t in tags] != [len(s.tokens) for s in test]:
                raise SystemExit(f"{system}: its test tags do not line up with the {len(test)} test sentences")
            f1 = {lang: v["f1"] for lang, v in score(test, tags).items()}
            name = student_of(system)
            cost = result.get("training") or {"seconds": timings[f"distil:{name}:joint"], "note": "distillation (teacher shared: below)"}
            if name in students:
                reported = report["models"][name]["test_f1"]["macro"]
                if system == name and abs(f1["macro"] - reported) > 0.05:
                    raise SystemExit(f"{system}: Tagger F1 {f1['macro']:.2f} differs from the run's report ({reported:.2f})")
        rows.append({"key": system, **result, "test_f1": f1, "training": cost})
    return {"command": command_line("benchmarks/peers.py", sys.argv[1:]), "machine": machine_description(),
            "run": str(run_dir), "languages": run.cfg.languages, "labeled_sentences": len(run.corpus.train),
            "dev_sentences": len(run.corpus.dev), "test_sentences": len(test), "throughput_texts": len(texts_of(work)),
            "teacher_shared": {"teach_seconds": timings.get("teach"), "annotate_seconds": timings.get("annotate")}, "rows": rows,
            "not_run": missing}


def markdown(res: dict[str, Any]) -> str:
    langs = res["languages"]
    shared = res["teacher_shared"]
    lines = [f"# Peers: what else a user could train on the same {res['labeled_sentences']:,} labeled sentences", "",
             f"Languages {', '.join(langs)}; selection on {res['dev_sentences']:,} dev sentences, test F1 (seqeval strict IOB2, "
             f"word level, gold tokens) on {res['test_sentences']:,}. Throughput: {res['throughput_texts']:,} raw test sentences "
             f"(tokens joined by spaces) in, entities out, batch 1 on the first {min(BATCH1_TEXTS, res['throughput_texts'])}; "
             f"{res['machine']}; every system in its own process with the same thread cap (spaCy's CPU ops use one).", "",
             "| system | parameters | macro test F1 | " + " | ".join(langs) + " | sent/s b=1 | sent/s b=64 | words/s b=64 | training (s) |",
             "|---|---|---|" + "---|" * len(langs) + "---|---|---|---|"]
    if res["not_run"]:
        lines[2:2] = [f"Not in this run: {', '.join(res['not_run'])} (no result in the work folder).", ""]
    for r in res["rows"]:
        t1, t64 = r["throughput"]["1"], r["throughput"]["64"]
        seconds = r["training"].get("seconds")
        lines.append(f"| {r['system']} | {r['parameters'] / 1e6:.2f}M | {r['test_f1']['macro']:.2f} | "
                     + " | ".join(f"{r['test_f1'][lang]:.1f}" for lang in langs)
                     + f" | {t1['sentences_per_s']:.0f} | {t64['sentences_per_s']:.0f} | {t64['words_per_s']:.0f} | "
                     + (f"{seconds:.0f}" if seconds is not None else "n/a") + " |")
    teach, annotate = (f"{s:.0f} s" if s is not None else "a time this run did not record"
                       for s in (shared["teach_seconds"], shared["annotate_seconds"]))
    lines += ["", f"Our students' training time is their distillation; the teacher they share took {teach} to fine-tune "
              f"and {annotate} to annotate the transfer set."] + (["", res["note"]] if res.get("note") else []) + ["", "## Settings", ""]
    for r in res["rows"]:
        lines.append(f"- **{r['system']}**: versions {json.dumps(r['versions'])}; " + "; ".join(f"{k}: {v}" for k, v in r["settings"].items()))
    lines += ["", f"Command: `{res['command']}`"]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from _common import save_figure

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for r in res["rows"]:
        x, y = r["throughput"]["64"]["sentences_per_s"], r["test_f1"]["macro"]
        ours = r["key"] not in PEERS
        ax.scatter([x], [y], color="tab:blue" if ours else "tab:gray", zorder=3)
        # An export sits on its PyTorch model's F1: their labels are stacked below it, one line each.
        offset = {None: 3, "onnx": -22, "int8": -10}[graph_of(r["key"]) if r["key"] not in PEERS else None]
        ax.annotate(r["key"], (x, y), fontsize=8, xytext=(5, offset), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlim(right=ax.get_xlim()[1] * 2)  # room for the fastest systems' labels
    ax.set_xlabel("sentences/s end to end, batch 64 (log)")
    ax.set_ylabel("macro test F1")
    ax.grid(alpha=0.3)
    ax.set_title(f"{', '.join(res['languages'])}: F1 vs throughput (blue: distilled students)", fontsize=9)
    save_figure(fig, path)


def main() -> None:
    from _common import benchmark_parser
    from xtremedistil_ner.io import write_json, write_text

    parser = benchmark_parser(__doc__, "tabulate the workers' finished results instead of running them")
    parser.add_argument("--run", type=Path, default=Path("runs/wikiann6-lowres"), help="a finished wikiann6-lowres run")
    parser.add_argument("--work", type=Path, default=Path("runs/peers"), help="data, peer models and each system's result")
    parser.add_argument("--flair-python", help="the interpreter of flair's environment (see benchmarks/peers_flair.py)")
    parser.add_argument("--systems", help="which systems to (re)run, comma-separated (default: the peers, then the run's students)")
    parser.add_argument("--smoke", action="store_true", help="a minutes-long check of the harness: tiny training budgets, results "
                                                             "under --work only (its figures mean nothing)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every system (default: all cores)")
    parser.add_argument("--note", help="how the times were taken (e.g. where a reused teacher's fine-tuning was timed), "
                                       "printed under the table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(int(os.environ.get("PEERS_THREADS", torch.get_num_threads())))
        if args.worker == "spacy":
            spacy_worker(args.work, args.smoke)
        elif args.worker == "teacher":
            teacher_worker(args.work, args.run)
        else:
            student_worker(args.work, args.run, args.worker)
        return
    if not args.reuse:
        prepare(args.run, args.work, args.data_root)
        for system in (args.systems.split(",") if args.systems else systems_of(args.run)):
            print(f"{system}: training and timing (log: {args.work / system / 'log.txt'})", file=sys.stderr, flush=True)
            run_worker(system, args.work, args.run, args.threads, args.flair_python, args.smoke)
    res = collect(args.run, args.work, args.data_root) | {"note": args.note}
    results = args.work / "results" if args.smoke else RESULTS
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / "peers.json", res)
    write_text(results / "peers.md", markdown(res))
    plot(res, results / "peers.png")
    print((results / "peers.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
