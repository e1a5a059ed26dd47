"""Transfer cache: the teacher's outputs stored faithfully (fp16, or compact formats close to it),
shards verified by size and checksum, fingerprint sensitive to everything that changes the outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForTokenClassification

from xtremedistil_ner import cache as cache_mod
from xtremedistil_ner.config import AnnotateConfig, ConfigError
from xtremedistil_ner.data.conll import Sentence
from xtremedistil_ner.encoding import encode
from xtremedistil_ner.io import ArtifactError

from conftest import make_sentences


FULL = AnnotateConfig(precision="fp32", hidden="fp16", hidden_dims=None)  # the teacher's outputs as they are


def fp_of(teacher_id: str, tokenizer_id: str, windows, langs, layers, max_length: int, fmt: AnnotateConfig) -> str:
    return cache_mod.scan(teacher_id, tokenizer_id, zip(windows, langs, strict=True), layers, max_length, fmt).fingerprint


def _scan(windows, langs, fmt: AnnotateConfig) -> cache_mod.Scan:
    return cache_mod.scan("teacher", "tok", zip(windows, langs), [1, 2], 12, fmt)


def _run(model, windows, langs, out: Path, fmt: AnnotateConfig = FULL, **kw) -> None:
    cache_mod.annotate(model, lambda: zip(windows, langs), _scan(windows, langs, fmt), [1, 2], out, 0, 8, Accelerator(cpu=True), fmt=fmt, **kw)


@pytest.fixture
def annotated(tmp_path: Path, tiny_teacher: Path, tiny_tokenizer):
    sents = [Sentence([w for w, _ in s], None, "en" if i % 3 else "de") for i, s in enumerate(make_sentences(40, seed=3))]
    windows = encode(sents, tiny_tokenizer, max_length=12)
    langs = [sents[w.sent].lang for w in windows]
    model = AutoModelForTokenClassification.from_pretrained(tiny_teacher, num_labels=5, ignore_mismatched_sizes=True).eval()
    transfer = _scan(windows, langs, FULL)
    out = tmp_path / "cache"
    cache_mod.annotate(model, lambda: zip(windows, langs), transfer, [1, 2], out, tiny_tokenizer.pad_token_id, 8, Accelerator(cpu=True),
                       shard_size=16, fmt=FULL)
    return model, windows, langs, transfer.fingerprint, out


def test_cache_holds_teacher_outputs_for_every_window(annotated) -> None:
    model, windows, langs, fp, out = annotated
    assert cache_mod.is_complete(out, fp)
    cache = cache_mod.TransferCache(out)
    assert len(cache) == len(windows) and len(cache.manifest["shards"]) == (len(windows) + 15) // 16
    for j in (0, 7, len(windows) - 1):
        item = cache[j]
        ids = torch.as_tensor(windows[j].input_ids, dtype=torch.long)[None]
        with torch.no_grad():
            ref = model(input_ids=ids, output_hidden_states=True)
        assert np.array_equal(item["input_ids"], windows[j].input_ids)
        assert np.allclose(item["teacher_logits"], ref.logits[0].numpy(), atol=1e-2)
        for k, layer in enumerate((1, 2)):
            assert np.allclose(item["teacher_hidden"][:, k], ref.hidden_states[layer][0].numpy(), atol=1e-2)
        # A view asks for its student's layers in the student's order.
        assert np.array_equal(cache_mod.TransferCache(out, layers=[2])[j]["teacher_hidden"][:, 0], item["teacher_hidden"][:, 1])
        # The losses on logits read a view without the hidden states; the cache itself keeps them.
        lean = cache.logits_only()[j]
        assert "teacher_hidden" not in lean and np.array_equal(lean["teacher_logits"], item["teacher_logits"])
    assert "teacher_hidden" in cache[0]


def test_language_filter(annotated) -> None:
    _, windows, langs, _, out = annotated
    de = cache_mod.TransferCache(out, ["de"])
    assert len(de) == langs.count("de")
    assert all(np.array_equal(de[j]["input_ids"], windows[i].input_ids)
               for j, i in enumerate(i for i, l in enumerate(langs) if l == "de"))
    de_ids = np.concatenate([w.input_ids for w, l in zip(windows, langs) if l == "de"])
    assert np.array_equal(de.token_counts(300), np.bincount(de_ids, minlength=300))
    all_ids = np.concatenate([w.input_ids for w in windows])
    assert np.array_equal(cache_mod.TransferCache(out).token_counts(300), np.bincount(all_ids, minlength=300))
    assert cache_mod.TransferCache(out).languages() == langs and de.languages() == ["de"] * len(de)  # for language_alpha
    with pytest.raises(cache_mod.CacheError):
        cache_mod.TransferCache(out, ["fr"])
    with pytest.raises(cache_mod.CacheError, match=r"teacher layers \[3\] are not in this cache"):
        cache_mod.TransferCache(out, layers=[1, 3])


def test_fingerprint_tracks_every_input(annotated) -> None:
    _, windows, langs, fp, _ = annotated
    base = ("teacher", "tok", windows, langs, [1, 2], 12, FULL)
    variants = [
        ("other-teacher",) + base[1:],
        base[:1] + ("other-tok",) + base[2:],
        base[:2] + (windows[:-1], langs[:-1]) + base[4:],
        base[:4] + ([1], 12, FULL),
        base[:5] + (16, FULL),
    ]
    assert fp_of(*base) == fp
    assert len({fp_of(*v) for v in variants} | {fp}) == len(variants) + 1


def test_truncated_or_corrupted_shard_is_detected_and_rebuilt(annotated) -> None:
    model, windows, langs, fp, out = annotated
    target = out / "shard-00001" / "hidden.npy"
    original = target.read_bytes()
    target.write_bytes(original[:-10])
    assert not cache_mod.is_complete(out, fp)
    flipped = bytearray(original)
    flipped[-3] ^= 0xFF
    target.write_bytes(bytes(flipped))
    assert len(cache_mod.TransferCache(out)) > 0  # same size: only the checksum catches it
    assert not cache_mod.is_complete(out, fp)
    with pytest.raises(ArtifactError, match=rf"{out} is a damaged transfer cache: {target}: sha256 differs"):
        cache_mod.check_shards(out, fp)
    # Rebuilding only redoes damaged shards (the checksum decides) and restores the exact bytes.
    untouched = (out / "shard-00000" / "hidden.npy").stat().st_mtime_ns
    _run(model, windows, langs, out, shard_size=16)
    assert cache_mod.is_complete(out, fp)
    assert target.read_bytes() == original
    assert (out / "shard-00000" / "hidden.npy").stat().st_mtime_ns == untouched


def test_shard_manifest_lists_its_files_and_old_listings_are_rebuilt(annotated) -> None:
    model, windows, langs, fp, out = annotated
    meta_path = out / "shard-00000" / cache_mod.SHARD_MANIFEST
    meta = json.loads(meta_path.read_text())
    assert sorted(meta["files"]) == sorted(f"{f}.npy" for f in cache_mod.FIELDS) and meta["fingerprint"] == fp
    # Listings by field name (written before shard manifests named their files) count as damaged.
    meta["files"] = {name.removesuffix(".npy"): info for name, info in meta["files"].items()}
    meta_path.write_text(json.dumps(meta))
    assert not cache_mod.is_complete(out, fp)
    with pytest.raises(cache_mod.CacheError, match=r"shard-00000/input_ids: missing"):
        cache_mod.TransferCache(out)
    _run(model, windows, langs, out, shard_size=16)
    assert cache_mod.is_complete(out, fp)


def test_other_fingerprint_is_not_complete(annotated) -> None:
    *_, out = annotated
    assert not cache_mod.is_complete(out, "0" * 64)


def test_not_enough_disk_is_a_clear_error(annotated, monkeypatch: pytest.MonkeyPatch) -> None:
    model, windows, langs, fp, out = annotated
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(100, 100, 10))
    with pytest.raises(cache_mod.CacheError, match="GiB"):
        _run(model, windows, langs, out / "other", fmt=AnnotateConfig())


def test_reading_a_truncated_cache_is_a_clear_error(annotated) -> None:
    *_, out = annotated
    target = out / "shard-00001" / "logits.npy"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(cache_mod.CacheError, match=r"shard-00001.*rerun `xdner annotate`"):
        cache_mod.TransferCache(out)


def _annotate(model, windows, langs, out: Path, fmt: AnnotateConfig) -> cache_mod.TransferCache:
    _run(model, windows, langs, out, fmt, shard_size=16)
    assert cache_mod.is_complete(out, _scan(windows, langs, fmt).fingerprint)
    return cache_mod.TransferCache(out)


@pytest.mark.parametrize("hidden, dims, tolerance", [("int8", None, 0.01), ("fp16", 24, 0.002), ("int8", 24, 0.01)])
def test_compact_hidden_formats_reconstruct_the_teacher(annotated, tmp_path: Path, hidden: str, dims: int | None, tolerance: float) -> None:
    """int8 codes with a per-token scale read back as fp32 states close to the full fp16 ones;
    with a principal-component basis, close to their projection on it (relative RMS error);
    either in fewer bytes per token."""
    model, windows, langs, _, out = annotated
    full = cache_mod.TransferCache(out)
    fmt = AnnotateConfig(precision="fp32", hidden=hidden, hidden_dims=dims)
    compact = _annotate(model, windows, langs, tmp_path / "compact", fmt)
    assert compact.manifest["format"] == {"precision": "fp32", "hidden": hidden, "hidden_dims": dims}
    width = model.config.hidden_size
    assert compact.manifest["bytes_per_token"] == 4 + 2 * 5 + 2 * ((dims or width) + 2 if hidden == "int8" else 2 * (dims or width))
    assert compact.manifest["bytes_per_token"] < cache_mod.bytes_per_token(5, width, 2, FULL)
    ref = np.concatenate([full[j]["teacher_hidden"] for j in range(len(full))]).astype(np.float32)
    got = np.concatenate([compact[j]["teacher_hidden"] for j in range(len(compact))])
    assert got.dtype == np.float32 and got.shape == ref.shape
    target = ref
    if dims:
        comps, mean = np.load(tmp_path / "compact" / "basis" / "components.npy"), np.load(tmp_path / "compact" / "basis" / "mean.npy")
        assert comps.shape == (2, dims, width) and np.allclose(comps @ comps.transpose(0, 2, 1), np.eye(dims), atol=1e-4)
        target = np.einsum("tld,ldh->tlh", np.einsum("tlh,ldh->tld", ref - mean, comps), comps) + mean
    assert np.sqrt(((got - target) ** 2).mean() / (target**2).mean()) < tolerance
    assert np.array_equal(compact[3]["teacher_logits"], full[3]["teacher_logits"])  # logits are kept as they were
    if dims:
        assert (tmp_path / "compact" / "basis" / "components.npy").exists()
        assert all(0 < e <= 1 for e in compact.manifest["explained_variance"])


def test_the_basis_is_fitted_once_and_a_damaged_one_is_named(annotated, tmp_path: Path) -> None:
    model, windows, langs, _, _ = annotated
    fmt = AnnotateConfig(precision="fp32", hidden="int8", hidden_dims=16)
    out = tmp_path / "pca"
    _annotate(model, windows, langs, out, fmt)
    components = out / "basis" / "components.npy"
    stamp = components.stat().st_mtime_ns
    _annotate(model, windows, langs, out, fmt)
    assert components.stat().st_mtime_ns == stamp
    data = bytearray(components.read_bytes())
    data[-1] ^= 0xFF
    components.write_bytes(bytes(data))
    with pytest.raises(cache_mod.CacheError, match="damaged transfer cache.*components.npy"):
        cache_mod.TransferCache(out)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_faster_teacher_precisions_agree_with_fp32(annotated, tmp_path: Path, tiny_teacher: Path, precision: str) -> None:
    model, windows, langs, _, out = annotated
    full = cache_mod.TransferCache(out)
    fresh = AutoModelForTokenClassification.from_pretrained(tiny_teacher, num_labels=5, ignore_mismatched_sizes=True).eval()
    fresh.load_state_dict(model.state_dict())
    fast = _annotate(fresh, windows, langs, tmp_path / precision, dataclasses.replace(FULL, precision=precision))
    ref = np.concatenate([full[j]["teacher_logits"] for j in range(len(full))]).astype(np.float32)
    got = np.concatenate([fast[j]["teacher_logits"] for j in range(len(fast))]).astype(np.float32)
    assert np.abs(got - ref).max() < 0.1
    assert (got.argmax(-1) == ref.argmax(-1)).mean() > 0.95


def test_a_compiled_teacher_annotates_as_the_eager_one(annotated, tmp_path: Path, tiny_teacher: Path) -> None:
    """`annotate.compile: true` (torch.compile, frozen weights, dynamic shapes: one compilation
    for the varied batch shapes) writes the same cache up to rounding, under the same fingerprint."""
    model, windows, langs, fp, out = annotated
    full = cache_mod.TransferCache(out)
    fresh = AutoModelForTokenClassification.from_pretrained(tiny_teacher, num_labels=5, ignore_mismatched_sizes=True).eval()
    fresh.load_state_dict(model.state_dict())
    compiled = _annotate(fresh, windows, langs, tmp_path / "compiled", dataclasses.replace(FULL, compile=True))
    assert compiled.manifest["compiled"] is True and compiled.manifest["fingerprint"] == fp
    for field in ("teacher_logits", "teacher_hidden"):
        ref = np.concatenate([full[j][field] for j in range(len(full))]).astype(np.float32)
        got = np.concatenate([compiled[j][field] for j in range(len(compiled))]).astype(np.float32)
        assert np.abs(got - ref).max() < 1e-2


def test_compile_failure_is_a_one_line_error_naming_the_setting(annotated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._inductor.config as inductor

    model, windows, langs, _, _ = annotated
    monkeypatch.setattr(inductor.cpp, "cxx", (None, str(tmp_path / "no-such-g++")))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)  # an earlier test's kernels would need no compiler
    torch._dynamo.reset()
    with pytest.raises(ConfigError, match=r"annotate.compile: torch.compile could not compile the teacher "
                                          r"\(InvalidCxxCompiler: No working C\+\+ compiler.*\); set annotate.compile: false"):
        _annotate(model, windows, langs, tmp_path / "broken", dataclasses.replace(FULL, compile=True))


def test_an_annotate_setting_changes_the_fingerprint(annotated) -> None:
    _, windows, langs, fp, _ = annotated
    others = [dataclasses.replace(FULL, **change) for change in ({"precision": "int8"}, {"hidden": "int8"}, {"hidden_dims": 8})]
    fps = {fp_of("teacher", "tok", windows, langs, [1, 2], 12, f) for f in others}
    assert len(fps) == 3 and fp not in fps
    for same in ({"batch_size": 7}, {"batch_tokens": 64}, {"compile": True}):  # how fast it is written, not what
        assert fp_of("teacher", "tok", windows, langs, [1, 2], 12, dataclasses.replace(FULL, **same)) == fp


def test_a_cache_that_does_not_record_its_format_is_a_clear_error(annotated) -> None:
    """A manifest without `format` cannot say how its hidden states were stored: refuse, say how to rebuild."""
    *_, out = annotated
    text = (out / cache_mod.MANIFEST).read_text()
    manifest = json.loads(text)
    del manifest["format"]
    (out / cache_mod.MANIFEST).write_text(json.dumps(manifest))
    try:
        with pytest.raises(cache_mod.CacheError, match=r"does not record its format.*xdner annotate --overwrite"):
            cache_mod.TransferCache(out)
    finally:
        (out / cache_mod.MANIFEST).write_text(text)


def test_int8_codes_of_all_zero_states_are_zero() -> None:
    codec = cache_mod.Codec(AnnotateConfig(precision="fp32", hidden="int8", hidden_dims=None), 4, None)
    stored = codec.encode(torch.zeros(3, 1, 4))
    assert not stored["hidden"].any() and (stored["hidden_scale"] > 0).all()
    assert not codec.decode(stored["hidden"], stored["hidden_scale"], [0]).any()


def test_annotate_streams_its_windows_and_refuses_a_set_that_changed(annotated, tmp_path: Path) -> None:
    """Annotate takes the windows as a stream it may read more than once (a generator function);
    if a pass no longer matches the scan (transfer files edited meanwhile), the cache is not
    declared finished."""
    model, windows, langs, _, _ = annotated
    held: list[int] = []

    def pairs():
        for n, pair in enumerate(zip(windows, langs), start=1):
            held.append(n)
            yield pair

    transfer = _scan(windows, langs, FULL)
    out = tmp_path / "streamed"
    cache_mod.annotate(model, pairs, transfer, [1, 2], out, 0, 8, Accelerator(cpu=True), shard_size=16, fmt=FULL)
    assert cache_mod.is_complete(out, transfer.fingerprint) and held[-1] == len(windows)
    edited = [windows[0]] + windows[2:] + [windows[1]]  # same windows, another order
    with pytest.raises(cache_mod.CacheError, match="transfer set changed while it was annotated"):
        cache_mod.annotate(model, lambda: zip(edited, langs), transfer, [1, 2], tmp_path / "edited", 0, 8, Accelerator(cpu=True),
                           shard_size=16, fmt=FULL)
    assert not cache_mod.is_complete(tmp_path / "edited", transfer.fingerprint)


def test_a_cache_needing_more_open_files_than_allowed_says_which_limit(annotated, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each mapped array holds a file descriptor: the soft limit is raised when the hard one allows,
    else the error names the limit (a 7.2M-sentence cache has about 900 shards of 4 arrays)."""
    import resource

    *_, out = annotated
    raised: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "setrlimit", lambda what, limits: raised.append(limits))
    monkeypatch.setattr(resource, "getrlimit", lambda what: (8, 100_000))
    cache_mod.TransferCache(out)
    assert raised and raised[0][0] > 8 and raised[0][1] == 100_000
    monkeypatch.setattr(resource, "getrlimit", lambda what: (8, 16))
    with pytest.raises(cache_mod.CacheError, match=r"needs \d+ open files but the hard limit is 16; raise it"):
        cache_mod.TransferCache(out)


@pytest.mark.parametrize("n", [0, 5, 1023, 1024, 2047, 2048, 5000, 100_003])
def test_the_basis_sample_is_spread_over_a_stream_of_unknown_length(n: int) -> None:
    """The scan keeps at most BASIS_SAMPLE windows for the basis, evenly spread from the first to
    the last, without knowing the stream's length (annotate no longer reads the set again for them)."""
    spread = cache_mod._Spread()
    for i in range(n):
        spread.add(i)  # the window's position stands in for the window
    picks = spread.sample()
    assert len(picks) == min(n, cache_mod.BASIS_SAMPLE) and picks == sorted(set(picks))
    if n:
        assert picks[0] == 0 and picks[-1] >= n - 2 * max(1, n // cache_mod.BASIS_SAMPLE)
        assert max(np.diff(picks), default=1) <= 2 * max(1, n / cache_mod.BASIS_SAMPLE) + 1
