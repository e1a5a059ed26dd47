"""The up-front check: each bad config is refused by `xdner run` (in-process) with exit status 2
and a message naming the key, before anything is written, and `xdner validate CONFIG` reports the
same problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from xtremedistil_ner.preflight import config_problems, teacher_config
from xtremedistil_ner.cli import main
from xtremedistil_ner.config import load_config

# (overrides on top of a valid config, what the message must say)
BAD = [
    (["distil.mode=jiont"], "distil.mode must be one of ('joint', 'per_language')"),
    (["distil.stages=[{name: r, loss: mse, data: transfer}]"], "unknown loss 'mse'"),
    (["distil.stages=[{name: r, loss: gold, data: transfer}]"], "the gold loss needs labeled data"),
    (["distil.stages=[{name: r, loss: logits_mse, data: labeled}]"], "needs the teacher's outputs"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, train: [encodr]}]"], "unknown parameter groups ['encodr']"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, epochs: 0}]"], "epochs must be a positive number"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, epochs: [1, 2]}]"], "a list of epochs needs train: gradual"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, lr: 0}]"], "lr must be > 0"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, patience: 0}]"], "patience must be >= 1"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, keep_confidence: 0}]"], "keep_confidence must be in (0, 1] or unset"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, keep_confidence: 0.9}]"], "keep_confidence needs a stage that starts from a trained classifier"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, keep_confidence: 0.9}, {name: x, loss: nope, data: labeled}]"], "unknown loss 'nope'"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, interpolate: 0.5}]"], "interpolate needs a stage that starts from a trained classifier"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, interpolate: 1.5}]"], "interpolate must be in (0, 1] or unset"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, language_alpha: 1.5}]"], "language_alpha must be in (0, 1] or unset"),
    (["distil.stages=[{name: r, loss: logits_kl, data: transfer, temperature: 0}]"], "temperature must be > 0"),
    (["distil.stages=[]"], "no distillation stages"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, scheduler: step}]"], "scheduler must be one of"),
    (["distil.batch_size=0"], "distil.batch_size must be >= 1"),
    (["distil.eval_batch_size=-1"], "distil.eval_batch_size must be >= 1"),
    (["distil.checkpoint_every=-1"], "distil.checkpoint_every must be >= 0"),
    (["distil.max_grad_norm=-1"], "distil.max_grad_norm must be >= 0"),
    (["teacher.layer=99"], "teacher.layer=99 is outside 0..2"),
    (["teacher.layer=-1"], "teacher.layer=-1 is outside"),
    (["teacher.batch_size=0"], "teacher.batch_size must be >= 1"),
    (["teacher.eval_batch_size=0"], "teacher.eval_batch_size must be >= 1"),
    (["teacher.epochs=0"], "teacher.epochs must be >= 1"),
    (["teacher.max_length=0"], "teacher.max_length must be >= 8"),
    (["teacher.lr=0"], "teacher.lr must be > 0"),
    (["teacher.warmup_ratio=1.5"], "teacher.warmup_ratio must be in [0, 1)"),
    (["mixed_precision=fp8"], "mixed_precision must be one of"),
    (["threads=0"], "threads must be in [1, 65536] or unset"),
    (["students=[{name: s, type: bilstm, embedding_dim: -5}]"], "embedding_dim must be >= 1"),
    (["students=[{name: s, type: bilstm, hidden_dim: 0}]"], "hidden_dim must be >= 1"),
    (["students=[{name: s, type: bilstm, dropout: 1.0}]"], "dropout must be in [0, 1)"),
    (["students=[{name: s, type: bilstm, lr_scale: 0}]"], "lr_scale must be > 0"),
    (["students=[{name: s, type: bilstm, mode: per_lang}]"], "mode must be one of ('joint', 'per_language') or unset"),
    (["students=[{name: s, type: lstm}]"], "unknown type 'lstm'"),
    (["students=[{name: s, type: transformer, hidden_dim: 16}]"], "needs num_layers"),
    (["students=[{name: s, type: transformer, hidden_dim: 100, num_layers: 2, num_heads: 3}]"], "not divisible"),
    (["students=[{name: s, type: transformer, hidden_dim: 16, num_layers: 2, layer_map: [1, 5]}]"], "one teacher layer in 1..2"),
    (["students=[{name: s, type: transformer, hidden_dim: 16, num_layers: 2, init: pretrained}]"], "init must be one of"),
    (["students=[{name: s, type: transformer, hidden_dim: 16, num_layers: 2, init: teacher}]"],
     "init: teacher needs the teacher's hidden_dim/num_heads/ff_dim (32/"),
    (["students=[{name: s, embedding_dim: 8, hidden_dim: 8, unseen: oov}]"], "unseen must be one of"),
    (["students=[{name: j, embedding_dim: 8, hidden_dim: 8}, {name: s, mode: per_language, from_student: j, keep_share: 1.5}]"], "keep_share must be in (0, 1]"),
    (["students=[{name: s}, {name: s, embedding_dim: 10}]"], "names must be unique"),
    (["students=[{name: j, embedding_dim: 8, hidden_dim: 8}, {name: s, mode: per_language, from_student: j, keep_share: 0.001}]"],
     "student 's': keep_share 0.001 leaves no room for embedding rows: the other layers of 'j' alone are at least"),
    (["students=[{name: s, mode: per_language, from_student: j}, {name: j}]"], "from_student 'j' is not a student listed before it"),
    (["students=[{name: j}, {name: s, from_student: j}]"], "is one tagger per language; set its mode: per_language"),
    (["students=[{name: j, mode: per_language}, {name: s, mode: per_language, from_student: j}]"], "must be a joint student"),
    (["students=[{name: 'a/b'}]"], "the name contains a path separator '/'"),
    (["students=[]"], "students: none given"),
    (["data.format=parquet"], "data.format must be one of"),
    (["data.train_per_lang=0"], "data.train_per_lang must be >= 1"),
    (["data.transfer_files={fr: [x.txt]}"], "data.transfer_files: languages ['fr'] are not in the run's languages"),
    (["eval.latency_repeats=0"], "eval.latency_repeats must be >= 1"),
    (["output_dir=' '"], "output_dir: empty"),
    (["log_with=[tensorbord]"], "log_with: 'tensorbord' is not an Accelerate tracker"),
    (["log_with=[clearml]"], "log_with: 'clearml' needs its package"),
    # #28: every value range-checked from its one description (config.Range), floats finite.
    (["seed=-1"], "seed must be in [0, 4294967295] (got -1)"),
    (["seed=4294967296"], "seed must be in [0, 4294967295]"),
    (["threads=99999999999999999999"], "threads must be in [1, 65536] or unset"),
    (["teacher.lr=.inf"], "teacher.lr must be a finite number (got inf)"),
    (["teacher.lr=.nan"], "teacher.lr must be a finite number (got nan)"),
    (["teacher.max_grad_norm=-1"], "teacher.max_grad_norm must be > 0 (got -1.0)"),
    (["teacher.weight_decay=-.inf"], "teacher.weight_decay must be a finite number (got -inf)"),
    (["distil.max_grad_norm=.nan"], "distil.max_grad_norm must be a finite number (got nan)"),
    (["distil.stages=[{name: r, loss: gold, data: labeled, lr: .nan}]"], "distil: stage 'r': lr must be a finite number (got nan)"),
    (["students=[{name: s, lr_scale: .nan}]"], "student 's': lr_scale must be a finite number (got nan)"),
    (["distil.stages=[{name: r, loss: logits_kl, data: transfer, temperature: .inf}]"], "stage 'r': temperature must be a finite number"),
    (["students=[{name: s, lr_scale: 1.0e+300, stages: [{name: g, loss: gold, data: labeled, lr: 1.0e+300}]}]"],
     "lr 1e+300 times lr_scale 1e+300 is inf, not a usable learning rate"),
    (["students=[{name: s, type: transformer, hidden_dim: 16, num_layers: 2, num_heads: 0}]"], "student 's': num_heads must be >= 1 or unset"),
    (["teacher.max_length=1000"], "teacher.max_length=1000 is more than the teacher's 128 positions; use at most 128"),
    (["students=[{name: '..'}]"], "student '..': the name is empty, '.' or '..'"),
    (['students=[{name: "a\\0b"}]'], "the name contains the control character U+0000"),
    (["languages=[en, de, '../../../ESCAPED']"], "languages: '../../../ESCAPED' contains a path separator '/'"),
    (["teacher.model=/no/such/teacher"], "teacher.model: '/no/such/teacher' is neither an existing folder nor a Hub id"),
    (["data.files.de={train: x.txt}"], "data.files.de has no dev file and data.root is not set"),
]


def test_the_base_config_is_valid(base: Path) -> None:
    assert config_problems(load_config(base)) == []


@pytest.mark.parametrize("overrides, message", BAD, ids=[o[0] for o, _ in BAD])
def test_a_bad_config_is_refused_before_anything_is_written(base: Path, tmp_path: Path, capsys, overrides, message) -> None:
    argv = ["run", str(base), *(a for o in overrides for a in ("--set", o))]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert err.startswith("xdner: error: the run config has")
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
    assert any(message in p for p in config_problems(load_config(base, overrides))), message


def test_compile_without_a_cxx_compiler_is_refused_up_front(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    problems = config_problems(load_config(base, ["annotate.compile=true"]))
    assert any("annotate.compile: true needs a C++ compiler" in p for p in problems), problems
    assert not any("annotate.compile" in p for p in config_problems(load_config(base, [])))  # off by default


@pytest.mark.parametrize("precision, bf16, message", [
    ("int8", True, "annotate.precision: int8 runs on CPUs only"),
    ("bf16", False, "annotate.precision: bf16 and this GPU has no bfloat16"),
    ("bf16", True, None), ("auto", False, None), ("fp32", False, None),
])
def test_an_annotation_precision_the_gpu_cannot_run_is_refused_up_front(
        base: Path, monkeypatch: pytest.MonkeyPatch, precision: str, bf16: bool, message: str | None) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    found = [p for p in config_problems(load_config(base, [f"annotate.precision={precision}"])) if "annotate.precision" in p]
    assert (found == []) if message is None else (len(found) == 1 and message in found[0]), found
    monkeypatch.undo()
    if not torch.cuda.is_available():  # on a CPU every precision runs
        assert not [p for p in config_problems(load_config(base, [f"annotate.precision={precision}"])) if "annotate.precision" in p]


def test_several_problems_are_listed_at_once(base: Path, capsys) -> None:
    assert main(["run", str(base), "--set", "distil.mode=x", "--set", "teacher.epochs=0"]) == 2
    err = capsys.readouterr().err
    assert "has 2 problems" in err and "distil.mode" in err and "teacher.epochs" in err


def test_output_dir_that_is_a_file_or_read_only(base: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert any("exists and is not a folder" in p for p in config_problems(load_config(base, [f"output_dir={tmp_path / 'file'}"])))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    problems = config_problems(load_config(base, [f"output_dir={locked / 'run'}"]))
    import os
    if os.geteuid() != 0:  # root writes anywhere
        assert any("is not writable" in p for p in problems)


def test_data_paths_that_are_missing_or_folders(base: Path, tmp_path: Path) -> None:
    problems = config_problems(load_config(base, [f"data.files.en.train={tmp_path}", f"data.files.de.dev={tmp_path / 'none.txt'}"]))
    assert any("data.files.en.train" in p and "is a folder" in p for p in problems)
    assert any("data.files.de.dev" in p and "does not exist" in p for p in problems)


def test_teacher_depth_comes_from_a_config_on_disk(tiny_teacher: Path, tmp_path: Path) -> None:
    assert teacher_config(str(tiny_teacher), tmp_path / "none")["num_hidden_layers"] == 2
    assert teacher_config("someone/not-cached-anywhere", tmp_path / "none") is None


def test_validate_reports_the_same_problems(base: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    raw = yaml.safe_load(base.read_text())
    raw["distil"] = {"mode": "jiont", "checkpoint_every": -1}
    bad.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "distil.mode must be one of ('joint', 'per_language') (got 'jiont')" in out and "distil.checkpoint_every must be >= 0" in out


def test_a_second_run_on_a_directory_in_use_stops_at_once(base: Path, tmp_path: Path, capsys) -> None:
    """Another process holds the lock (as a running `xdner run` does): this one exits with status
    3 and a message, without writing; once that process is gone, its lock file blocks nothing."""
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from filelock import FileLock; "
        f"lock = FileLock({str(out / '.xdner.lock')!r}); lock.acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        assert main(["run", str(base), "--set", "teacher.epochs=1"]) == 3
        assert time.perf_counter() - start < 30  # no waiting for the lock
        err = capsys.readouterr().err
        assert "is in use by another xdner process" in err and "Traceback" not in err
        assert not (out / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    from xtremedistil_ner.pipeline import Run

    run = Run(load_config(base))
    with run.claim():  # the dead holder's lock file is still there and blocks nothing
        assert (out / ".xdner.lock").exists() and (out / "config.yaml").exists()


def test_hub_ids_without_a_cache_on_an_offline_machine_fail_at_once(base: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """The README's Hub example where the Hub cannot be reached: one line per missing id naming
    both fixes, in seconds, before anything is written (not minutes of download retries)."""
    import time

    monkeypatch.setattr("xtremedistil_ner.preflight.hub_reachable", lambda: False)
    hub = tmp_path / "hub.yaml"
    hub.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "languages": "wikiann6",
                                   "data": {"dataset": "wikiann", "format": "hub"},
                                   "teacher": {"model": "someone/not-cached-anywhere"}}))
    start = time.perf_counter()
    assert main(["run", str(hub)]) == 2
    assert time.perf_counter() - start < 20
    err = capsys.readouterr().err
    assert "teacher.model: model 'someone/not-cached-anywhere' is neither a local folder nor in the Hugging Face cache" in err
    assert "point teacher.model at a local checkpoint folder" in err
    assert "dataset 'wikiann' (for de, es, fr, hi, ru, tr)" in err and "data.format: local" in err
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr("xtremedistil_ner.preflight.hub_reachable", lambda: True)
    assert not [p for p in config_problems(load_config(hub)) if "Hugging Face cache" in p]


@pytest.mark.parametrize("layers", [["wikiann48-lowres"], ["language-alpha"], ["wikiann6-lowres"], ["scale"], ["teacher-budget"],
                                    ["wikiann6-lowres", "distil-ablation"], ["wikiann6-lowres", "size-sweep"]])
def test_every_benchmark_config_passes_the_up_front_check(tmp_path: Path, layers: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark's config (layered on its base where the script layers it) is one a user could
    run: no key, stage or student problem (its data files are not looked for here)."""
    from xtremedistil_ner import preflight
    from xtremedistil_ner.config import resolve

    monkeypatch.setattr(preflight, "_data_problems", lambda cfg: [])

    configs = Path(__file__).resolve().parents[1] / "benchmarks" / "configs"
    assert {p.stem for p in configs.glob("*.yaml")} == {"wikiann48-lowres", "language-alpha", "wikiann6-lowres", "scale",
                                                      "teacher-budget", "distil-ablation", "size-sweep"}  # a new one is listed above
    cfg = resolve([configs / f"{name}.yaml" for name in layers], [f"output_dir={tmp_path / 'run'}", f"data.root={tmp_path}"])
    assert config_problems(cfg) == []

