"""Stages as data: sub-stage plans, validation, and that a sub-stage trains exactly its groups
(frozen parameters unchanged, trained ones changed) and checkpoints so a rerun resumes."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import Dataset
from xdner_runtime.windows import Window

from xtremedistil_ner.config import DistilConfig, StageConfig
from xtremedistil_ner.data.conll import Sentence
from xtremedistil_ner.distiller import CHECKPOINT, FINAL, Distiller, StageData, is_distilled
from xtremedistil_ner.io import ArtifactError
from xtremedistil_ner import distiller
from xtremedistil_ner.stages import LOSSES, anchor_loss, gold_loss, register, sub_stages, validate_stage
from xtremedistil_ner.students import XtremeDistilPreTrainedModel, load_student
from xtremedistil_ner.training import Plugin, TrainLoop

from conftest import Crash, crashing_accelerator, tiny_student

LABELS = ["O", "B-PER", "I-PER"]


class FakeTransfer(Dataset):
    def __init__(self, n: int = 24, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            t = int(rng.integers(3, 8))
            self.items.append({
                "input_ids": rng.integers(10, 20, t).astype(np.int32),
                "teacher_logits": rng.normal(size=(t, 3)).astype(np.float16),
                "teacher_hidden": rng.normal(size=(t, 1, 10)).astype(np.float16),
                "index": i,
            })

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    def logits_only(self) -> "FakeTransfer":
        """As `TransferCache.logits_only`: the same items without the teacher's hidden states."""
        view = copy.copy(self)
        view.items = [{k: v for k, v in it.items() if k != "teacher_hidden"} for it in self.items]
        return view


def make_data() -> StageData:
    transfer = FakeTransfer()
    labeled = []
    for i in range(12):
        ids = np.array([1, 10 + i % 5, 11, 2], dtype=np.int32)
        labels = np.array([-100, 1, 0, -100])
        labeled.append(Window(i, ids, np.array([1, 2], dtype=np.int32), 0, labels))
    dev = [Sentence(["a", "b"], ["B-PER", "O"], "xx", "dev:1"), Sentence(["c", "d"], ["O", "O"], "yy", "dev:4")]
    dev_windows = [Window(i, np.array([1, 10, 12, 2], dtype=np.int32), np.array([1, 2], dtype=np.int32), 0) for i in range(2)]
    return StageData(transfer, [len(it["input_ids"]) for it in transfer.items], labeled, dev, dev_windows, pad_id=0)


def make_student() -> XtremeDistilPreTrainedModel:
    return tiny_student(LABELS, np.arange(10, 20), 0, 30, embedding_dim=6, hidden_dim=5)


def test_sub_stages_gradual_is_top_down() -> None:
    student = make_student()
    groups = student.groups
    stage = StageConfig("s", "gold", "labeled", "gradual")
    assert sub_stages(stage, student) == [
        ("classifier",), ("classifier", "projection"), ("classifier", "projection", "encoder"), groups,
    ]
    assert sub_stages(StageConfig("s", "gold", "labeled", "all"), student) == [groups]
    assert sub_stages(StageConfig("s", "gold", "labeled", ["encoder"]), student) == [("encoder",)]
    # The representation loss never reaches the classifier: its gradual walk starts below it.
    representation = StageConfig("r", "representation", "transfer", "gradual")
    assert sub_stages(representation, student) == [("projection",), ("projection", "encoder"), groups[1:]]


def test_a_gradual_representation_stage_trains(tmp_path: Path) -> None:
    """Gradual unfreezing under the representation loss: every sub-stage trains something the loss
    reaches (its first used to be the classifier alone, refused when distillation began)."""
    stage = StageConfig("r", "representation", "transfer", "gradual", epochs=1)
    progress = Distiller(make_student(), DistilConfig(batch_size=4, stages=[stage]), make_data(), tmp_path, Accelerator(cpu=True), seed=0).run()
    assert [r["trainable"] for r in progress["history"]] == [["projection"], ["projection", "encoder"], ["projection", "encoder", "embeddings"]]


@pytest.mark.parametrize("stage, message", [
    (StageConfig("s", "nope", "transfer"), "unknown loss"),
    (StageConfig("s", "logits_mse", "labeled"), "needs the teacher"),
    (StageConfig("s", "gold", "transfer"), "needs labeled"),
    (StageConfig("s", "gold", "labeled", ["lstm"]), "unknown parameter groups"),
    (StageConfig("s", "logits_mse", "transfer", []), "reaches none of the groups in train \\(an empty list\\)"),
    (StageConfig("s", "representation", "transfer", ["classifier"]), "representation loss reaches none"),
    (StageConfig("s", "gold", "labeled", "sometimes"), "train must be"),
    (StageConfig("s", "gold", "elsewhere"), "data must be"),
    (StageConfig("s", "gold", "labeled", epochs=0), "epochs must be"),
    (StageConfig("s", "gold", "labeled", "gradual", epochs=[]), "epochs must be"),
    (StageConfig("s", "gold", "labeled", "all", epochs=[1, 2]), "needs train: gradual"),
])
def test_invalid_stages_are_rejected(stage: StageConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_stage(stage, make_student())


@pytest.mark.parametrize("loss, data, trained", [
    ("representation", "transfer", ["encoder"]),
    ("logits_kl", "transfer", ["classifier", "embeddings"]),
    ("hard", "transfer", ["projection"]),
    ("gold", "labeled", ["classifier"]),
])
def test_sub_stage_trains_only_its_groups(tmp_path: Path, loss: str, data: str, trained: list[str]) -> None:
    student = make_student()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    stage = StageConfig("s", loss, data, trained, epochs=2, lr=0.05, patience=5, temperature=2.0)
    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=[stage])
    Distiller(student, cfg, make_data(), tmp_path, Accelerator(cpu=True), seed=0).run()
    groups = student.group_parameters()
    names = {id(p): n for n, p in student.named_parameters()}
    for group, params in groups.items():
        for p in params:
            changed = not torch.equal(before[names[id(p)]], student.state_dict()[names[id(p)]])
            assert changed == (group in trained), f"{names[id(p)]} ({group})"
    assert is_distilled(tmp_path)


def test_a_second_loss_under_a_taken_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="loss 'gold' is registered twice"):
        register("gold", "labeled")(lambda out, batch, temperature: batch["labels"].sum())
    assert LOSSES["gold"].fn is gold_loss


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_does_what_its_record_says(tmp_path: Path, name: str) -> None:
    """A loss is one record: the data it reads, the units it averages over, whether it reaches
    the classifier, how its sub-stages select and whether its batches carry the teacher's hidden
    states are all read from it."""
    loss = LOSSES[name]
    student = make_student()
    stage = StageConfig("s", name, loss.data, "all", temperature=2.0)
    validate_stage(stage, student)
    distiller = Distiller(student, DistilConfig(batch_size=4, stages=[stage]), make_data(), tmp_path, Accelerator(cpu=True), seed=0)
    loader, _, held = distiller._stage_loaders(stage, 0)
    batch = next(iter(loader))
    value, units = loss(student, batch, stage.temperature)
    value.backward()
    assert torch.isfinite(value) and 0 < units <= batch["attention_mask"].sum()
    assert any(p.grad is not None and p.grad.any() for p in student.group_parameters()["classifier"]) == loss.reaches_classifier
    assert (held is not None) == loss.select_on_loss
    assert ("teacher_hidden" in batch) == loss.reads_hidden  # the others read the cache's lean view


class Recorder(Plugin):
    """Writes the loop's events down; stops the loop after its first epoch, or interrupts it at
    its first step (`fail`)."""

    def __init__(self, fail: bool) -> None:
        self.events: list[str] = []
        self.fail = fail

    def before_train(self, loop: TrainLoop) -> None:
        self.events.append("before_train")

    def before_epoch(self, loop: TrainLoop) -> None:
        self.events.append("before_epoch")

    def after_step(self, loop: TrainLoop) -> None:
        self.events.append("after_step")
        if self.fail:
            raise KeyboardInterrupt

    def after_epoch(self, loop: TrainLoop, record: dict, improved: bool) -> None:
        self.events.append("after_epoch")
        loop.should_stop = True

    def after_train(self, loop: TrainLoop) -> None:
        self.events.append("after_train")

    def after_exception(self, loop: TrainLoop, exc: BaseException) -> None:
        self.events.append(type(exc).__name__)


def test_plugins_hear_the_loops_events_and_one_can_stop_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = StageConfig("g", "gold", "labeled", "all", epochs=3, lr=0.05, patience=5)
    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=[stage])
    stops = Recorder(fail=False)
    monkeypatch.setattr(distiller, "Track", lambda tag: stops)
    progress = Distiller(make_student(), cfg, make_data(), tmp_path / "stops", Accelerator(cpu=True), seed=0).run()
    assert stops.events == ["before_train", "before_epoch", *["after_step"] * 3, "after_epoch", "after_train"]
    assert len(progress["history"][0]["epochs"]) == 1
    fails = Recorder(fail=True)
    monkeypatch.setattr(distiller, "Track", lambda tag: fails)
    with pytest.raises(KeyboardInterrupt):
        Distiller(make_student(), cfg, make_data(), tmp_path / "fails", Accelerator(cpu=True), seed=0).run()
    assert fails.events == ["before_train", "before_epoch", "after_step", "KeyboardInterrupt"]


def test_rerun_resumes_from_checkpoint_and_a_finished_student_keeps_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed while saving the final model, a rerun loads the checkpoint and trains nothing
    more; once the final model and progress are written, the checkpoint is removed."""
    stages = [StageConfig("a", "logits_mse", "transfer", "gradual", epochs=1, lr=0.01)]
    cfg = DistilConfig(batch_size=4, stages=stages)
    save = distiller.save_student

    def crash_on_final(model, path, *args):
        if Path(path).name == FINAL:
            raise Crash
        save(model, path, *args)

    monkeypatch.setattr(distiller, "save_student", crash_on_final)
    with pytest.raises(Crash):
        Distiller(make_student(), cfg, make_data(), tmp_path, Accelerator(cpu=True), seed=0).run()
    saved = load_student(tmp_path / CHECKPOINT)
    monkeypatch.setattr(distiller, "save_student", save)
    resumed_student = make_student()
    second = Distiller(resumed_student, cfg, make_data(), tmp_path, Accelerator(cpu=True), seed=0).run()
    assert second["done"] == ["0.0", "0.1", "0.2", "0.3"] and len(second["history"]) == 4
    for k, v in saved.state_dict().items():
        assert torch.equal(v, resumed_student.state_dict()[k]), k
    assert is_distilled(tmp_path) and [p.name for p in tmp_path.iterdir() if CHECKPOINT in p.name] == []


def test_epoch_list_sets_each_gradual_sub_stage(tmp_path: Path) -> None:
    """[1, 3]: the first sub-stage trains one epoch, every later one up to three (patience
    permitting). Only sub-stages with a choice to make pay for dev passes."""
    stages = [StageConfig("a", "logits_mse", "transfer", "gradual", epochs=[1, 3], lr=0.01, patience=5)]
    distiller = Distiller(make_student(), DistilConfig(batch_size=4, stages=stages), make_data(), tmp_path, Accelerator(cpu=True), seed=0)
    progress = distiller.run()
    assert [len(h["epochs"]) for h in progress["history"]] == [1, 3, 3, 3]
    assert [sorted(e) for e in progress["history"][0]["epochs"]] == [["epoch", "train_loss"]]
    assert all("dev_macro_f1" in e for h in progress["history"][1:] for e in h["epochs"])
    # The final dev scores are the last sub-stage's best epoch's, which are the saved model's.
    assert progress["final_dev"] == progress["history"][-1]["best_dev"] == distiller.dev_f1(load_student(tmp_path / "model"))


def test_a_stage_step_budget_caps_every_epoch(tmp_path: Path) -> None:
    stage = StageConfig("a", "logits_mse", "transfer", "all", epochs=2, lr=0.01, max_steps=2)
    distiller = Distiller(make_student(), DistilConfig(batch_size=4, stages=[stage]), make_data(), tmp_path, Accelerator(cpu=True), seed=0)
    loader, sampler, _ = distiller._stage_loaders(stage, 0)
    whole, _, _ = distiller._stage_loaders(dataclasses.replace(stage, max_steps=None), 0)
    assert len(sampler) == len(list(loader)) == 2 < len(list(whole))
    assert len(distiller.run()["history"][0]["epochs"]) == 2  # every epoch ran, each on its budget
    # Each sub-stage draws its own budgeted subset: sub-stages of one epoch each would otherwise
    # all train on the first epoch's batches.
    drawn = [[sorted(b) for b in distiller._stage_loaders(stage, 0, ki)[1]] for ki in (0, 1)]
    assert drawn[0] != drawn[1] and drawn[0] == [sorted(b) for b in sampler]


make_gold_data = make_data


def test_a_stage_that_lowers_dev_f1_gives_back_the_model_that_entered_it(tmp_path: Path) -> None:
    """Stage-entry weights are kept (in checkpoints too); a stage that ends below them on macro
    dev F1 is rolled back, also when the run was interrupted inside that stage and resumed."""
    good = StageConfig("good", "gold", "labeled", "all", epochs=3, lr=0.05, patience=3)
    # A teacher that says "O" everywhere: imitating it loses the dev entity the gold stage learned.
    wreck = StageConfig("wreck", "hard", "transfer", "gradual", epochs=1, lr=0.05)

    def make_data() -> StageData:
        data = make_gold_data()
        for item in data.transfer.items:
            item["teacher_logits"][:] = np.array([10.0, -10.0, -10.0], dtype=np.float16)
        return data

    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=[good], checkpoint_every=0)
    only_good = Distiller(make_student(), cfg, make_data(), tmp_path / "good", Accelerator(cpu=True), seed=0).run()
    both = dataclasses.replace(cfg, stages=[good, wreck], checkpoint_every=1)
    progress = Distiller(make_student(), both, make_data(), tmp_path / "both", Accelerator(cpu=True), seed=0).run()
    record = progress["history"][-1]
    assert only_good["final_dev"]["macro"]["f1"] > 0
    assert record["rolled_back"] and record["stage_entry_dev_macro_f1"] == only_good["final_dev"]["macro"]["f1"]
    assert progress["final_dev"] == only_good["final_dev"]
    kept = load_student(tmp_path / "both" / "model").state_dict()
    for k, v in load_student(tmp_path / "good" / "model").state_dict().items():
        assert torch.equal(v, kept[k]), k

    acc = crashing_accelerator(16)  # 9 saves in "good", 6 in wreck's first sub-stage, then its second's first
    with pytest.raises(Crash):
        Distiller(make_student(), both, make_data(), tmp_path / "resumed", acc, seed=0).run()
    entry = tmp_path / "resumed" / "checkpoint" / "stage_entry.safetensors"
    intact = entry.read_bytes()
    flipped = bytearray(intact)
    flipped[-1] ^= 0xFF
    entry.write_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match=r"stage_entry\.safetensors is a damaged distillation checkpoint: sha256 differs"):
        Distiller(make_student(), both, make_data(), tmp_path / "resumed", Accelerator(cpu=True), seed=0).run()
    entry.write_bytes(intact)
    again = Distiller(make_student(), both, make_data(), tmp_path / "resumed", Accelerator(cpu=True), seed=0).run()
    assert again["history"][-1]["rolled_back"] and again["final_dev"] == only_good["final_dev"]
    resumed = load_student(tmp_path / "resumed" / "model").state_dict()
    assert all(torch.equal(v, resumed[k]) for k, v in kept.items())


@pytest.mark.parametrize("confidence, kept", [(0.5, True), (0.9, False)])
def test_keep_confidence_keeps_a_guarded_stage_only_when_resampled_dev_sets_agree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, confidence: float, kept: bool) -> None:
    """A guarded stage that does not lower dev F1 is still undone when it beats the model that
    entered it in fewer resamplings of the dev set than `keep_confidence` asks (here 70%)."""
    calls = []

    def share(before, after, seed):
        calls.append((before, after))
        return 0.7

    monkeypatch.setattr(distiller, "share_better", share)
    good = StageConfig("good", "gold", "labeled", "all", epochs=3, lr=0.05, patience=3)
    same = StageConfig("same", "gold", "labeled", "all", epochs=1, lr=1e-9, keep_confidence=confidence)  # changes no prediction
    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=[good, same], checkpoint_every=0)
    progress = Distiller(make_student(), cfg, make_gold_data(), tmp_path, Accelerator(cpu=True), seed=0).run()
    record = progress["history"][-1]
    assert record["share_better"] == 0.7 and record["rolled_back"] is not kept
    (before, after), = calls  # the entering model's and the stage's dev entities, sentence by sentence
    assert before.keys() == after.keys() == {"xx", "yy"}
    assert "share_better" not in progress["history"][0]  # no key, no resampling


def test_interpolate_ends_a_guarded_stage_between_its_trained_weights_and_those_that_entered_it(tmp_path: Path) -> None:
    """With `interpolate`, a guarded stage's result is the weighted mix of the weights it trained
    (those the same stage keeps without the key) and the weights that entered it, scored again on
    dev; the guard then judges the mix."""
    good = StageConfig("good", "gold", "labeled", "all", epochs=3, lr=0.05, patience=3)
    more = StageConfig("more", "gold", "labeled", "all", epochs=1, lr=0.02)
    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=[good], checkpoint_every=0)
    runs = {}
    for name, stages in [("entered", [good]), ("trained", [good, more]),
                         ("mixed", [good, dataclasses.replace(more, interpolate=0.25)])]:
        runs[name] = Distiller(make_student(), dataclasses.replace(cfg, stages=stages), make_gold_data(), tmp_path / name,
                               Accelerator(cpu=True), seed=0).run()
    assert not runs["trained"]["history"][-1]["rolled_back"]
    record = runs["mixed"]["history"][-1]
    assert not record["rolled_back"] and "trained_dev_macro_f1" not in runs["trained"]["history"][-1]
    assert record["trained_dev_macro_f1"] == runs["trained"]["final_dev"]["macro"]["f1"]
    weights = {name: load_student(tmp_path / name / "model").state_dict() for name in runs}
    moved = 0
    for k, v in weights["mixed"].items():
        if not v.is_floating_point():  # the id map: the same in all three
            assert torch.equal(v, weights["trained"][k]) and torch.equal(v, weights["entered"][k]), k
            continue
        expected = 0.25 * weights["trained"][k] + 0.75 * weights["entered"][k]
        assert torch.allclose(v, expected, atol=1e-6), k
        moved += not torch.equal(weights["trained"][k], weights["entered"][k])
    assert moved  # the stage changed weights, so the mix is a third model, not either end
    with pytest.raises(ValueError, match="'more': interpolate needs a stage that starts from a trained classifier"):
        Distiller(make_student(), dataclasses.replace(cfg, stages=[dataclasses.replace(more, interpolate=0.25)]), make_gold_data(),
                  tmp_path / "unguarded", Accelerator(cpu=True), seed=0)


def test_anchor_holds_a_guarded_stage_near_the_model_that_entered_it(tmp_path: Path) -> None:
    """With `anchor`, a guarded stage's loss adds the weighted KL divergence of its predictions
    from those of the model that entered it: zero for that model itself, and a heavy weight keeps
    its predictions much nearer the entering ones than the same stage's without it."""
    good = StageConfig("good", "gold", "labeled", "all", epochs=3, lr=0.05, patience=3)
    more = StageConfig("more", "gold", "labeled", "all", epochs=1, lr=0.05)
    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=[good], checkpoint_every=0)
    weights = {}
    for name, stages in [("entered", [good]), ("free", [good, more]), ("anchored", [good, dataclasses.replace(more, anchor=100.0)])]:
        Distiller(make_student(), dataclasses.replace(cfg, stages=stages), make_gold_data(), tmp_path / name,
                  Accelerator(cpu=True), seed=0).run()
        weights[name] = load_student(tmp_path / name / "model")

    loader, _, _ = Distiller(make_student(), cfg, make_gold_data(), tmp_path / "x", Accelerator(cpu=True), seed=0)._stage_loaders(more, 0)
    batch = next(iter(loader))
    entered = weights["entered"].eval()
    plain, _ = LOSSES["gold"](entered, batch, 1.0)
    same, _ = LOSSES["gold"](entered, batch, 1.0, anchor=(entered, 5.0))
    assert torch.allclose(same, plain)  # no distance from itself

    def drift(name: str) -> float:  # how far its predictions moved from the entering model's
        with torch.no_grad():
            return anchor_loss(weights[name].eval()(batch["input_ids"], batch["attention_mask"])["logits"], entered, batch).item()

    assert 0 < drift("anchored") < drift("free") / 4
    other, _ = LOSSES["gold"](entered, batch, 1.0, anchor=(weights["free"].eval(), 5.0))
    assert other > plain + 1e-4
    with pytest.raises(ValueError, match="'more': anchor needs a stage that starts from a trained classifier"):
        Distiller(make_student(), dataclasses.replace(cfg, stages=[dataclasses.replace(more, anchor=1.0)]), make_gold_data(),
                  tmp_path / "unguarded", Accelerator(cpu=True), seed=0)


@pytest.mark.parametrize("loss, data", [("representation", "transfer"), ("gold", "labeled")])
def test_language_alpha_draws_each_stage_epoch_by_language(tmp_path: Path, loss: str, data: str) -> None:
    """A stage's `language_alpha` draws its windows by language, on either data and after the
    held-out split of a stage that selects on held-out loss; without the windows' languages it
    is refused."""
    base = make_data()
    n = len(base.transfer) if data == "transfer" else len(base.labeled)
    languages = ["xx"] * (n - 4) + ["yy"] * 4
    data_with = dataclasses.replace(base, **{f"{data}_languages": languages})
    stage = StageConfig("s", loss, data, "all", language_alpha=0.3)
    distiller = Distiller(make_student(), DistilConfig(batch_size=4, stages=[stage]), data_with, tmp_path, Accelerator(cpu=True), seed=0)
    loader, sampler, _ = distiller._stage_loaders(stage, 0)
    seen = [languages[i] for batch in loader for i in batch["index"].tolist()]
    assert seen.count("yy") == sampler.draws[1] > 4  # the small language comes more often than its share of the data
    assert len(seen) == sum(sampler.draws)
    with pytest.raises(ValueError, match=f"language_alpha needs each {data} window's language"):
        Distiller(make_student(), DistilConfig(batch_size=4, stages=[stage]), base, tmp_path / "b", Accelerator(cpu=True), seed=0)._stage_loaders(stage, 0)
