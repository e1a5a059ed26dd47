"""The pipeline on a tiny local teacher: joint and per-language students, every word of every
test sentence predicted, report contents, and reruns that skip finished steps."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from xdner_runtime.command import model_info

from xtremedistil_ner.config import load_config
from xtremedistil_ner.errors import XdnerError
from xtremedistil_ner.io import verify_manifest
from xtremedistil_ner.pipeline import Run
from xtremedistil_ner.preflight import transfer_problems
from xtremedistil_ner.steps.students import restrict
from xtremedistil_ner.students import load_student

STAGES = (
    "distil.stages=[{name: rep, loss: representation, data: transfer, train: [embeddings, encoder, projection], epochs: 1},"
    " {name: logits, loss: logits_mse, data: transfer, train: gradual, epochs: 1},"
    " {name: gold, loss: gold, data: labeled, train: all, epochs: 2, lr: 0.01}]"
)


# A BiLSTM (matches the teacher's middle layer) with a schedule of its own, and a transformer
# (matches layers 1 and 2) on `distil.stages`.
STUDENTS = ("students=[{name: s, embedding_dim: 16, hidden_dim: 16, stages: ["
            "{name: rep, loss: representation, data: transfer, train: [embeddings, encoder, projection], epochs: 1},"
            " {name: logits, loss: logits_mse, data: transfer, train: gradual, epochs: [1, 2], patience: 5}]},"
            " {name: t, type: transformer, num_layers: 2, hidden_dim: 16, num_heads: 2, ff_dim: 32, lr_scale: 0.5}]")


def make_run(tmp: Path, data: Path, teacher: Path, mode: str) -> Run:
    cfg = load_config(None, [
        f"output_dir={tmp / mode}", f"teacher.model={teacher}", "languages=[en,de]", "teacher.epochs=1",
        "teacher.min_steps=0", "teacher.max_length=16", STUDENTS, STAGES,
        f"distil.mode={mode}", "eval.latency_repeats=1", f"log_with={'[tensorboard]' if mode == 'joint' else '[]'}",
    ])
    cfg.data.files = {l: {s: str(data / l / f"{s}.txt") for s in ("train", "dev", "test")} for l in ("en", "de")}
    cfg.data.transfer_files = {l: [str(data / l / "transfer.txt")] for l in ("en", "de")}
    return Run(cfg)


@pytest.mark.parametrize("mode", ["joint", "per_language"])
def test_pipeline_end_to_end(tmp_path: Path, tiny_data: Path, tiny_teacher: Path, mode: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path, tiny_data, tiny_teacher, mode)
    report = run.run_all()
    assert report is not None
    out = run.root
    scopes = ["joint"] if mode == "joint" else ["de", "en"]
    assert sorted(p.name for p in (out / "students" / "s").iterdir()) == scopes
    assert sorted(p.name for p in (out / "students" / "t").iterdir()) == scopes
    for model in ("teacher", "s", "t"):
        assert set(report["models"][model]["test_f1"]) == {"en", "de", "macro"}
    assert report["models"]["t"]["type"] == "transformer" and report["models"]["t"]["num_layers"] == 2
    assert json.loads((out / "cache" / "manifest.json").read_text())["layers"] == [1, 2]
    s = report["models"]["s"]
    assert s["compression"] == pytest.approx(report["models"]["teacher"]["parameters"] / s["parameters"])
    assert s["speedup"] > 0 and s["latency"]["batch_size"] == 32
    assert report["data"]["languages"]["en"]["transfer"] == 80 + 120
    assert {"teach", "annotate", "distil", "evaluate"} <= set(report["timings"])
    # Per-stage distillation times add up to the students' distil timings, which add up to "distil".
    timings = report["timings"]
    for name in ("s", "t"):
        per_stage = report["models"][name]["stage_seconds"]
        assert list(per_stage) == ["setup", "rep", "logits"] + (["gold"] if name == "t" else [])
        assert sum(per_stage.values()) == pytest.approx(sum(timings[f"distil:{name}:{sc}"] for sc in scopes), abs=0.1 * len(per_stage))
    assert timings["distil"] == pytest.approx(sum(v for k, v in timings.items() if k.startswith("distil:")))
    assert "## Distillation wall time per stage" in (out / "report.md").read_text()
    # The gold-only baseline: the first student's twin, from random weights, on labeled data alone.
    base = report["models"]["s-gold-only"]
    assert base["baseline_of"] == "s" and base["parameters"] == s["parameters"] and list(base["stage_seconds"]) == ["setup", "gold"]
    gain = s["test_f1"]["macro"] - base["test_f1"]["macro"]
    assert "| s vs s-gold-only | " in (out / "report.md").read_text() and f"{gain:+.2f} |" in (out / "report.md").read_text()
    card = (out / "students" / "s-gold-only" / scopes[0] / "model" / "README.md").read_text()
    # A teacher piece no transfer or labeled sentence has reads its nearest kept piece's row
    # (`unseen: nearest`), except in the teacher-free baseline, where it reads the unknown row.
    distilled, gold_only = (load_student(out / "students" / n / scopes[0] / "model") for n in ("s", "s-gold-only"))
    special = set(run.tokenizer.all_special_ids)
    assert int((gold_only.id_map == 1).sum()) > len(special)
    assert {int(i) for i in (distilled.id_map == 1).nonzero().flatten()} <= special
    assert "the gold-only baseline that `s`" in card and "## How it was trained" in card
    # Training curves: every trained epoch of every scope, drawn into a PNG the report links.
    for name in ("s", "t"):
        curves = report["models"][name]["curves"]
        assert sorted(curves) == scopes
        assert all(len(points) == sum(len(h["epochs"]) for h in json.loads(
            (out / "students" / name / sc / "progress.json").read_text())["history"]) for sc, points in curves.items())
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG" and "![training curves](curves.png)" in (out / "report.md").read_text()
    assert verify_manifest(out, "report.manifest.json") == []
    # The joint run logged its curves to TensorBoard too (and its config as hyper-parameters, beside).
    if mode == "joint":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        (events,) = (out / "logs" / "joint").glob("events.out.tfevents.*")
        tags = EventAccumulator(str(events)).Reload().Tags()["scalars"]
        # One prefix per model (and student sub-stage); per-step loss and learning rate besides the epochs' records.
        assert {"teacher/dev_macro_f1", "teacher/step_loss", "teacher/lr", "s/joint/logits/classifier/train_loss",
                "s/joint/logits/classifier/lr"} <= set(tags) and not any(t.startswith("teacher/teacher") for t in tags)
        scalars = EventAccumulator(str(events)).Reload()
        assert len(scalars.Scalars("teacher/lr")) == len(scalars.Scalars("teacher/step_loss")) > len(scalars.Scalars("teacher/dev_macro_f1"))
    assert json.loads((out / "report.json").read_text())["models"].keys() == report["models"].keys()
    for scope in scopes:  # each student ran its own schedule
        s_runs = json.loads((out / "students" / "s" / scope / "progress.json").read_text())["history"]
        t_runs = json.loads((out / "students" / "t" / scope / "progress.json").read_text())["history"]
        assert [(h["stage"], len(h["epochs"])) for h in s_runs] == [("rep", 1), ("logits", 1)] + [("logits", 2)] * 3
        assert [h["stage"] for h in t_runs][-1] == "gold"
    # Per-language students only know their own language's transfer windows.
    if mode == "per_language":
        en = load_student(out / "students" / "s" / "en" / "model")
        de = load_student(out / "students" / "s" / "de" / "model")
        assert en.labels == de.labels == run.corpus.labels.tags
    # Each student folder has a model card whose Hub metadata holds the report's test F1.
    for name in ("s", "t"):
        for scope in scopes:
            card = ModelCard.load(out / "students" / name / scope / "model" / "README.md")
            langs = ["en", "de"] if scope == "joint" else [scope]
            assert card.data.language == langs and card.data.pipeline_tag == "token-classification"
            assert "knowledge-distillation" in card.data.tags and card.data.base_model == str(run.cfg.teacher.model)
            assert {r.dataset_config: r.metric_value for r in card.data.eval_results} == {
                lang: report["models"][name]["test_f1"][lang] for lang in langs}
            assert "Not evaluated yet" not in card.text and f"{report['models']['teacher']['test_f1'][langs[0]]:.2f}" in card.text
            # What `xdner serve`'s page shows of the folder comes from that card.
            info = model_info(out / "students" / name / scope / "model")
            assert (info["name"], info["languages"], info["card"]) == (name if scope == "joint" else f"{name} ({scope})", langs,
                                                                       {lang: report["models"][name]["test_f1"][lang] for lang in langs})
    # A second run over the same directory skips every finished step.
    logs_before = sorted((out / "logs").rglob("*"))
    capsys.readouterr()
    again = make_run(tmp_path, tiny_data, tiny_teacher, mode).run_all()
    log = capsys.readouterr().err
    assert "skipping" in log and log.count("already distilled") == 3 * len(scopes)
    # A run that trains nothing, and one the checks refuse, write no log files.
    assert sorted((out / "logs").rglob("*")) == logs_before
    changed = make_run(tmp_path, tiny_data, tiny_teacher, mode)
    changed.cfg.teacher.epochs = 2
    with pytest.raises(XdnerError, match="teacher.epochs"):
        changed.run_all()
    assert sorted((out / "logs").rglob("*")) == logs_before
    # Evaluation reuses every model's scores: same weights, same test data.
    assert log.count("reusing") == 4 and again["models"]["t"]["test_f1"] == report["models"]["t"]["test_f1"]
    # ... and reports the time the scoring took when it was done, not the time reusing it took.
    assert again["timings"]["evaluate"] == report["timings"]["evaluate"] == pytest.approx(
        sum(m["eval_seconds"] for m in report["models"].values()), abs=0.1)


def test_joint_and_per_language_students_share_one_run(tmp_path: Path, tiny_data: Path, tiny_teacher: Path) -> None:
    """A student's own `mode` overrides `distil.mode`: one joint student and per-language taggers
    of the same size from one teacher and one cache, compared side by side in the report."""
    run = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    run.cfg.students = [dataclasses.replace(run.cfg.students[0], stages=None),
                        dataclasses.replace(run.cfg.students[0], name="s-per", stages=None, mode="per_language")]
    run.cfg.distil.gold_only_baseline = False
    report = run.run_all()
    out = run.root
    assert [p.name for p in (out / "students" / "s").iterdir()] == ["joint"]
    assert sorted(p.name for p in (out / "students" / "s-per").iterdir()) == ["de", "en"]
    joint, per = report["models"]["s"], report["models"]["s-per"]
    assert (joint["mode"], per["mode"]) == ("joint", "per_language")
    taggers = [load_student(out / "students" / "s-per" / lang / "model").num_parameters() for lang in ("de", "en")]
    assert per["total_parameters"] == sum(taggers) and per["parameters"] == int(sum(taggers) / 2)
    assert joint["total_parameters"] == joint["parameters"]
    text = (out / "report.md").read_text()
    assert "| s-per (one per language) |" in text
    section = text.split("## One joint tagger or one per language?")[1]
    assert f"| s | 1 | {joint['parameters'] / 1e6:.2f}M | " in section and f"| s-per | 2 | {sum(taggers) / 1e6:.2f}M | " in section
    assert f"{per['test_f1']['macro']:.2f} |" in section


def test_per_language_taggers_specialised_from_the_joint_student(tmp_path: Path, tiny_data: Path, tiny_teacher: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`from_student`: each language's tagger starts from the joint student, keeps the pieces
    that fit its share of the parameters (`keep_share`), distils on its language with the specialisation
    schedule, and the report sets joint, specialised and from-scratch taggers side by side. A rerun
    reclaims a finished student's leftover checkpoint; code that ranks the rows otherwise does
    not reuse the taggers. Two students specialised from one source share one set-up."""
    from xtremedistil_ner.errors import StaleArtifactError
    from xtremedistil_ner.steps import distil
    from xtremedistil_ner.students import vocabulary

    sources: list[str] = []
    built = distil.Specialiser
    monkeypatch.setattr(distil, "Specialiser", lambda ctx, source, *rest: (sources.append(source), built(ctx, source, *rest))[1])
    run = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    joint = dataclasses.replace(run.cfg.students[0], stages=None)
    spec = dataclasses.replace(joint, name="s-spec", mode="per_language", from_student="s", embedding_dim=99, keep_share=0.9)
    run.cfg.students = [joint, spec, dataclasses.replace(spec, name="s-spec-small", keep_share=0.85),
                        dataclasses.replace(joint, name="s-per", mode="per_language")]
    run.cfg.distil.gold_only_baseline = False
    report = run.run_all()
    assert sources == ["s"]
    out = run.root
    source = load_student(out / "students" / "s" / "joint" / "model")
    for lang in ("de", "en"):
        tagger = load_student(out / "students" / "s-spec" / lang / "model")
        assert tagger.config.embedding_dim == source.config.embedding_dim  # the joint student's architecture
        assert tagger.num_parameters() <= 0.9 * source.num_parameters()  # keep_share
        small = load_student(out / "students" / "s-spec-small" / lang / "model")
        assert small.num_parameters() <= 0.85 * source.num_parameters()
        progress = json.loads((out / "students" / "s-spec" / lang / "progress.json").read_text())
        assert [h["stage"] for h in progress["history"]] == ["logits", "gold"]
        assert "stage_entry_dev_macro_f1" in progress["history"][0]  # the first stage is guarded: it entered trained
        assert progress["inputs"]["student"]["from_student"] == hashlib.sha256(
            (out / "students" / "s" / "joint" / "model" / "model.safetensors").read_bytes()).hexdigest()
    section = (out / "report.md").read_text().split("## One joint tagger or one per language?")[1].split("\n## ")[0]
    rows = [line.split(" | ")[0].strip("| ") for line in section.splitlines() if line.startswith("| s")]
    assert rows == ["s", "s-spec", "s-spec-small", "s-per"]
    assert report["models"]["s-spec"]["total_parameters"] <= 2 * report["models"]["s"]["parameters"]
    # The vocabulary's set-up (every language's counts, the nearest-piece search) is distillation time too.
    spec_seconds = report["models"]["s-spec"]["stage_seconds"]
    assert list(spec_seconds) == ["setup", "logits", "gold"]  # on these tiny taggers the set-up may round to 0.0 s
    assert sum(spec_seconds.values()) == pytest.approx(sum(report["timings"][f"distil:s-spec:{lang}"] for lang in ("de", "en")), abs=0.3)
    leftover = out / "students" / "s" / "joint" / "checkpoint"
    leftover.mkdir()  # as a kill between a finished student's final save and the checkpoint's removal leaves it
    run.step("distil")
    assert not leftover.exists()
    monkeypatch.setattr(vocabulary, "OVERLAP_POWER", 2.0)
    with pytest.raises(StaleArtifactError, match=r"student\.vocabulary\.overlap_power: 8\.0 -> 2\.0.*--overwrite"):
        run.step("distil")


def test_a_cache_from_other_annotate_settings_is_refused_or_rebuilt(tmp_path: Path, tiny_data: Path, tiny_teacher: Path) -> None:
    """Another cache format is never misread: annotate refuses the finished cache, naming the
    changed setting and --overwrite, and rebuilds it only when told to."""
    from xtremedistil_ner.errors import StaleArtifactError

    first = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    first.cfg.students = first.cfg.students[:1]
    first.cfg.distil.gold_only_baseline = False
    first.step("teach")
    first.step("annotate")
    other = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    other.cfg.annotate.hidden = "fp16"
    with pytest.raises(StaleArtifactError, match=r"annotate\.hidden: int8 -> fp16.*--overwrite"):
        other.step("annotate")
    other.overwrite = True
    other.step("annotate")
    assert json.loads((other.cache_dir / "manifest.json").read_text())["format"]["hidden"] == "fp16"


def test_one_process_shares_one_teacher_and_lends_it_unchanged(tmp_path: Path, tiny_data: Path, tiny_teacher: Path) -> None:
    """A run loads its teacher once for every step: annotate borrows it (int8 quantises it in
    place, so it is loaded again afterwards) and evaluate scores the teacher as trained, as a
    fresh process does; the weights' sha256 the steps key on is the verified manifest's."""
    import torch

    from xtremedistil_ner.io import sha256_file

    run = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    run.cfg.students, run.cfg.distil.gold_only_baseline, run.cfg.annotate.precision = run.cfg.students[:1], False, "int8"
    report = run.run_all()
    assert run.teacher_file_sha256("model.safetensors") == sha256_file(run.teacher_dir / "model.safetensors")
    teacher = run.teacher
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in teacher.modules())
    assert all(p.device.type == "cpu" for p in teacher.parameters()) and run.teacher is teacher  # loaded once
    (run.eval_dir / "teacher.json").unlink()
    fresh = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    fresh.cfg.students, fresh.cfg.distil.gold_only_baseline, fresh.cfg.annotate.precision = run.cfg.students, False, "int8"
    again = fresh.run_all(("evaluate",))
    assert again["models"]["teacher"]["test_types"] == report["models"]["teacher"]["test_types"]


def test_restrict_renumbers_windows(tiny_data: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    run.step("teach")
    windows = run.windows("test")
    idx, sents, wins = restrict(run.corpus.test, windows, "de")
    assert all(s.lang == "de" for s in sents) and len(sents) == 30
    assert sorted({w.sent for w in wins}) == list(range(len(sents)))
    assert all(run.corpus.test[idx[w.sent]].lang == "de" for w in wins)


def test_steps_need_a_teacher(tmp_path: Path, tiny_data: Path, tiny_teacher: Path) -> None:
    run = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    from xtremedistil_ner.errors import XdnerError

    for step in ("annotate", "distil", "evaluate"):
        with pytest.raises(XdnerError, match="run `xdner teach` first"):
            run.step(step)


def test_reruns_with_other_settings_refuse_or_rebuild(tmp_path: Path, tiny_data: Path, tiny_teacher: Path) -> None:
    """A finished run rerun with a changed setting never reuses a model built without it: teach,
    distil and evaluate refuse, naming the changed keys (and nothing is rewritten); with
    --overwrite exactly what the change invalidates is rebuilt."""
    from xtremedistil_ner.errors import StaleArtifactError

    first = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    first.cfg.students = first.cfg.students[:1]
    report = first.run_all()
    teacher_json = (first.teacher_dir / "xdner_teacher.json").read_bytes()
    student = first.student_dir("s") / "model" / "model.safetensors"
    weights = student.read_bytes()

    # 1. another teacher setting: teach refuses, and so do the steps built on the teacher
    stale = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    stale.cfg.students, stale.cfg.teacher.epochs = first.cfg.students, 2
    for step in ("teach", "distil", "evaluate"):
        with pytest.raises(StaleArtifactError, match=r"teacher\.epochs: 1 -> 2.*--overwrite"):
            stale.step(step)
    # 2. another student size under the same name: distil and evaluate refuse
    bigger = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    bigger.cfg.students = [dataclasses.replace(first.cfg.students[0], embedding_dim=24)]
    for step in ("distil", "evaluate"):
        with pytest.raises(StaleArtifactError, match=r"student\.embedding_dim: 16 -> 24"):
            bigger.step(step)
    # 3. another training file for one language: the teacher's data changed
    other = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    other.cfg.students = first.cfg.students
    other.cfg.data.files["de"]["train"] = str(tiny_data / "en" / "train.txt")
    with pytest.raises(StaleArtifactError, match="train_sentences"):
        other.step("teach")
    assert (first.teacher_dir / "xdner_teacher.json").read_bytes() == teacher_json and student.read_bytes() == weights
    # --overwrite on case 2: only that student is distilled again; the teacher and cache stay
    bigger.overwrite = True
    again = bigger.run_all()
    assert (first.teacher_dir / "xdner_teacher.json").read_bytes() == teacher_json
    assert load_student(first.student_dir("s") / "model").config.embedding_dim == 24
    assert again["models"]["s"]["parameters"] > report["models"]["s"]["parameters"]


def test_a_language_without_transfer_text_stops_per_language_taggers_before_any_work(
        tmp_path: Path, tiny_data: Path, tiny_teacher: Path) -> None:
    """Without its labeled sentences in the transfer set and with no transfer file, a language has
    no transfer text: per-language taggers would fail once the teacher is trained (their part of
    the cache is empty), so the run stops first; a joint student may do without it. An empty
    transfer set stops any run."""
    run = make_run(tmp_path, tiny_data, tiny_teacher, "per_language")
    run.cfg.data.include_labeled_in_transfer = False
    del run.cfg.data.transfer_files["de"]
    with pytest.raises(XdnerError, match=r"no transfer sentences for de \(data\.include_labeled_in_transfer is false.*"
                                         r"per-language students s, t have nothing"):
        run.run_all()
    assert not run.root.exists()  # nothing written: not even config.yaml
    joint = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    joint.cfg.data.include_labeled_in_transfer = False
    del joint.cfg.data.transfer_files["de"]
    assert transfer_problems(joint.cfg, joint.corpus.stats) == []
    joint.cfg.data.transfer_files = {}
    joint.__dict__.pop("corpus", None)
    with pytest.raises(XdnerError, match="the transfer set is empty"):
        joint.run_all(("annotate",))
    per_language = make_run(tmp_path, tiny_data, tiny_teacher, "per_language")  # labeled text annotated, but none for de
    stats = {"languages": {"en": {"transfer": 5}, "de": {"transfer": 0}}}
    assert transfer_problems(per_language.cfg, stats)[0].startswith(
        "data: no transfer sentences for de (no labeled train sentence to annotate and data.transfer_files gives none)")
