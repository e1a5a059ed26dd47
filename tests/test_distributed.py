"""The loops under several processes (CPU, gloo, launched with torchrun): evaluation, transfer
annotation and distillation give what one process gives; plus how global batches are sharded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from xtremedistil_ner.batching import LengthBatchSampler, check_global_batch
from xtremedistil_ner.cache import FIELDS, MANIFEST

WORKER = Path(__file__).with_name("mp_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
F1_TOLERANCE = 1.0  # macro dev F1 points between 1 and 2 processes (dropout 0: only float summation order differs)


def run_worker(out: Path, teacher: Path, nproc: int, *extra: str) -> dict:
    launch = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    done = subprocess.run(launch + [str(WORKER), str(teacher), str(out), *extra], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def runs(tiny_teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path, dict]:
    root = tmp_path_factory.mktemp("multiprocess")
    one = run_worker(root / "one", tiny_teacher, 1)
    two = run_worker(root / "two", tiny_teacher, 2, "--checkpoint-every", "3")
    assert (one["world_size"], two["world_size"]) == (1, 2)
    return root / "one", one, root / "two", two


@pytest.mark.distributed
def test_evaluation_matches_one_process(runs) -> None:
    one_dir, one, two_dir, two = runs
    assert one["dev_windows"] % 2 == 1 and one["dev_windows"] % 6  # uneven over processes and batches
    a, b = np.load(one_dir / "preds.npz"), np.load(two_dir / "preds.npz")
    assert len(a.files) == len(b.files) == one["dev_windows"]
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    assert one["teacher_dev"] == two["teacher_dev"]


@pytest.mark.distributed
def test_annotation_writes_every_window_once(runs) -> None:
    one_dir, _, two_dir, _ = runs
    manifest = json.loads((one_dir / "cache" / MANIFEST).read_text())
    assert len(manifest["shards"]) % 2 == 1  # the processes get different numbers of shards
    assert json.loads((two_dir / "cache" / MANIFEST).read_text()) == manifest
    for shard in manifest["shards"]:
        for field in FIELDS:
            x, y = np.load(one_dir / "cache" / shard / f"{field}.npy"), np.load(two_dir / "cache" / shard / f"{field}.npy")
            assert np.array_equal(x, y), (shard, field)


@pytest.mark.distributed
def test_distillation_matches_one_process(runs) -> None:
    one_dir, one, two_dir, two = runs
    f1_gap = abs(one["final_dev"]["macro"]["f1"] - two["final_dev"]["macro"]["f1"])
    assert f1_gap <= F1_TOLERANCE, (one["final_dev"]["macro"], two["final_dev"]["macro"])
    x, y = load_file(one_dir / "student" / "model" / "model.safetensors"), load_file(two_dir / "student" / "model" / "model.safetensors")
    # Whole-model relative distance, not the largest element: Adam turns float noise in a near-zero
    # gradient into a full lr-sized step, so one element may drift (1.6e-3 seen in CI) while the
    # model as a whole agrees to ~2e-8. (Skipping DDP's gradient sync moves dev F1 by 22 points.)
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x if not x[k].is_floating_point())
    weights = [k for k in x if x[k].is_floating_point()]
    distance = torch.cat([(x[k] - y[k]).flatten() for k in weights]).norm()
    assert float(distance / torch.cat([x[k].flatten() for k in weights]).norm()) < 1e-3
    assert not (two_dir / "student" / "resume").exists()  # mid-sub-stage state is dropped once a sub-stage ends


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("shuffle", [False, True])
def test_sampler_shards_global_batches(world: int, shuffle: bool) -> None:
    lengths = np.random.default_rng(0).integers(3, 30, 41)
    full = list(LengthBatchSampler(lengths, 8, shuffle, seed=3))
    shards = [list(LengthBatchSampler(lengths, 8, shuffle, 3, world, rank, pad=False)) for rank in range(world)]
    assert sorted(i for s in shards for b in s for i in b) == list(range(len(lengths)))  # each window once
    pos = [0] * world
    for batch in full:  # every global batch is split over the processes (a process with no share skips it)
        ranks = [r for r in range(world) if len(batch) > r]
        assert sorted(i for r in ranks for i in shards[r][pos[r]]) == sorted(batch)
        for r in ranks:
            pos[r] += 1
    padded = [list(LengthBatchSampler(lengths[:world * 8 + 1], 8, shuffle, 3, world, rank, pad=True)) for rank in range(world)]
    assert len({len(p) for p in padded}) == 1 and all(len(b) > 0 for p in padded for b in p)  # lockstep


def test_a_step_budget_draws_other_batches_each_epoch() -> None:
    """`max_batches`: an epoch is the first batches of its shuffled order, reproducible per epoch
    (a resumed run sees the same), and over epochs the budget reaches other windows."""
    lengths = np.random.default_rng(0).integers(3, 30, 400)
    sampler = LengthBatchSampler(lengths, 8, True, seed=3, max_batches=5)
    epochs = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert len(sampler) == 5 and all(len(e) == 5 for e in epochs) and epochs[0] == epochs[2] != epochs[1]
    whole = LengthBatchSampler(lengths, 8, True, seed=3)
    assert list(whole)[:5] == epochs[0] and len(whole) == 50
    assert len(LengthBatchSampler(lengths, 8, True, seed=3, max_batches=500)) == 50  # a budget above an epoch changes nothing
    with pytest.raises(ValueError, match="shuffled epochs only"):
        LengthBatchSampler(lengths, 8, False, max_batches=5)


def test_global_batch_must_split_evenly() -> None:
    check_global_batch(8, 2, "distil.batch_size")
    with pytest.raises(ValueError, match="distil.batch_size=6 .* divisible by the 4 processes"):
        check_global_batch(6, 4, "distil.batch_size")


def test_in_order_batches_are_capped_in_padded_subwords() -> None:
    """The teacher's pass batches long windows fewer at a time: its peak memory is set by the cap,
    not by how long the longest windows of a (larger) transfer set are."""
    lengths = np.random.default_rng(0).integers(3, 129, 500)
    capped = list(LengthBatchSampler(lengths, 64, False, max_tokens=64 * 32))
    assert sorted(i for b in capped for i in b) == list(range(500)) and len(LengthBatchSampler(lengths, 64, False, max_tokens=2048)) == len(capped)
    assert all(len(b) <= 64 and (len(b) == 1 or len(b) * lengths[b].max() <= 2048) for b in capped)
    assert max(len(b) * lengths[b].max() for b in LengthBatchSampler(lengths, 64, False)) > 2048  # uncapped: up to 64 x 128
    with pytest.raises(ValueError, match="in-order batches only"):
        LengthBatchSampler(lengths, 64, True, max_tokens=2048)


def test_language_sampling_gives_each_language_its_share_of_an_epoch() -> None:
    """`alpha` draws an epoch by group (XLM-R's language sampling): 90 and 10 windows at alpha 0.5
    get 75 and 25 of an epoch's 100; the small language's windows come 2 or 3 times, the large
    one's are a fresh subset each epoch, and processes still split the same global batches."""
    lengths = np.arange(100) % 17 + 1
    groups = ["big"] * 90 + ["small"] * 10
    sampler = LengthBatchSampler(lengths, 8, True, seed=3, groups=groups, alpha=0.5)
    assert len(sampler) == 13
    subsets = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        counts = np.bincount([i for b in sampler for i in b], minlength=100)
        assert counts[:90].sum() == 75 and counts[:90].max() == 1 and counts[90:].sum() == 25 and set(counts[90:]) == {2, 3}
        subsets.append(frozenset(np.flatnonzero(counts[:90])))
        world = 2
        shards = [LengthBatchSampler(lengths, 8, True, 3, world, rank, pad=True, groups=groups, alpha=0.5) for rank in range(world)]
        for shard in shards:
            shard.set_epoch(epoch)
        assert [sorted(a + b) for a, b in zip(*map(list, shards))] == [sorted(b) for b in sampler]
    assert subsets[0] != subsets[1]
    one = LengthBatchSampler(lengths, 8, True, seed=3, groups=["xx"] * 100, alpha=0.3)
    assert list(one) == list(LengthBatchSampler(lengths, 8, True, seed=3))  # one language: nothing changes
    with pytest.raises(ValueError, match=r"give each of the 100 windows its group \(none given\)"):
        LengthBatchSampler(lengths, 8, True, alpha=0.5)
    with pytest.raises(ValueError, match=r"give each of the 100 windows its group \(99 given\)"):
        LengthBatchSampler(lengths, 8, True, groups=groups[:99], alpha=0.5)
    with pytest.raises(ValueError, match="alpha draws shuffled epochs by group: it needs shuffle"):
        LengthBatchSampler(lengths, 8, False, groups=groups, alpha=0.5)

