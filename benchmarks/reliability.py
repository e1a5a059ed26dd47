"""Reliability acceptance table (issue #8): every bad input the issue lists, run through the real
code paths (`xdner validate` and the other commands through `xtremedistil_ner.cli.main`, and
the readers and loaders a run calls), recorded verbatim with exit codes; then the corruption and
interruption scenarios with the tests that check each (run here, results recorded); then the
example counts of the hypothesis property tests.

    python benchmarks/reliability.py

writes benchmarks/results/reliability.{md,json}. Temp paths in messages are shown as `<tmp>`.
Tiny models (a WordPiece tokenizer trained here, a random 2-layer BERT) stand in for the teacher:
what is measured is how damaged inputs are handled, not accuracy.
"""

from __future__ import annotations

import contextlib
import html
import io
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from transformers import (
    BertConfig,
    BertForTokenClassification,
    BertTokenizerFast,
    PreTrainedTokenizerBase,
)

from xdner_runtime.windows import merge_predictions

from xtremedistil_ner import cache as cache_mod
from xtremedistil_ner.cli import interrupted_message
from xtremedistil_ner.cli import main as xdner
from xtremedistil_ner.config import DataConfig
from xtremedistil_ner.data.conll import Sentence, read_conll
from xtremedistil_ner.data.corpus import build_corpus
from xtremedistil_ner.data.labels import LabelSet
from xtremedistil_ner.encoding import encode
from xtremedistil_ner.io import write_json, write_text
from xtremedistil_ner.languages import load_language
from xtremedistil_ner.students import (
    BiLSTMForTokenClassification,
    BiLSTMStudentConfig,
    load_student,
    save_student,
)
from xtremedistil_ner.students.base import config_kwargs
from xtremedistil_ner.teacher import _save, load_teacher

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MAX_LINES = 4  # of each message, in the table
CLEAN = "Anna\tB-PER\nSchmidt\tI-PER\nlives\tO\nin\tO\nBerlin\tB-LOC\n\nHello\tO\n"
LANGUAGE_YAML = "code: xx\nname: Test\nscript: Latin\nsources:\n  wikiann:\n    hub: {path: wikiann, name: xx}\n"  # no word_segmentation
SCENARIO_TESTS = {
    "transfer-cache shard truncated": (
        "detected by the size check (`is_complete`), only that shard is re-annotated, bytes identical to the original",
        "tests/test_cache.py::test_truncated_or_corrupted_shard_is_detected_and_rebuilt"),
    "transfer-cache shard altered, same size (sha256 mismatch)": (
        "detected: the size check passes, the sha256 check (what `xdner annotate` runs) fails; only that shard is "
        "re-annotated, bytes identical to the original",
        "tests/test_cache.py::test_truncated_or_corrupted_shard_is_detected_and_rebuilt"),
    "transfer-cache shard truncated, then `xdner distil` without `annotate`": (
        "`CacheError` naming the shard and telling to rerun `xdner annotate`; nothing is read from it",
        "tests/test_cache.py::test_reading_a_truncated_cache_is_a_clear_error"),
    "not enough disk for the transfer cache": (
        "`CacheError` with GiB needed vs free before anything is written",
        "tests/test_cache.py::test_not_enough_disk_is_a_clear_error"),
    "student checkpoint truncated or a byte flipped": (
        "`ArtifactError` naming model.safetensors (size / sha256 vs manifest.json); CLI exit 2",
        "tests/test_manifest.py::test_damaged_student_weights_are_a_clear_error"),
    "old student checkpoint without manifest": (
        "loads unchecked; if its weights are damaged, `ArtifactError` naming the file instead of a safetensors trace",
        "tests/test_manifest.py::test_student_without_manifest_still_loads_and_damage_is_named"),
    "teacher file truncated": (
        "`ArtifactError` naming the file (sizes from xdner_teacher.json checked on every load)",
        "tests/test_manifest.py::test_teacher_manifest_holds_file_sizes_checked_on_load"),
    "report edited after the run": (
        "`verify_manifest(out, 'report.manifest.json')` names the changed file",
        "tests/test_manifest.py::test_report_manifest"),
    "SIGKILL mid sub-stage": (
        "rerun resumes mid-epoch from the last `checkpoint_every` state; final weights bit-identical to an uninterrupted run",
        "tests/test_resume.py::test_sigkill_mid_sub_stage_then_resume_is_bit_identical"),
    "crash while a checkpoint is being written": (
        "previous checkpoint intact (atomic directory), no temp dirs left, resume is exact",
        "tests/test_resume.py::test_crash_while_saving_keeps_previous_checkpoint_and_resumes_exactly"),
    "kill between the two renames of a directory swap": (
        "the previous version (`.NAME.old`) is used",
        "tests/test_resume.py::test_settled_dir_falls_back_to_the_previous_version"),
    "Ctrl-C during a directory swap": (
        "SIGINT is held until both renames are done, then raised: never a half-swapped checkpoint",
        "tests/test_manifest.py::test_ctrl_c_during_a_directory_swap_lands_after_it"),
    "SIGINT (Ctrl-C) during `xdner run`": (
        "exit 130, message names the exact resume command, last checkpoint loads and verifies, rerunning the command completes",
        "tests/test_interrupt.py::test_sigint_during_distil_keeps_the_checkpoint_and_names_the_resume_command"),
}
HYPOTHESIS_FILES = ["tests/test_conll.py", "tests/test_encoding.py"]


@dataclass
class Row:
    """One bad input: what was tried, through which command, the message (verbatim) and exit
    status, and what the run's own reader or loader does with it."""

    input: str
    command: str
    message: str
    exit_code: int | None
    reader: str


class Sandbox:
    """The temp dir the inputs live in, and messages with its path replaced by `<tmp>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, rel: str, content: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    def show(self, text: str) -> str:
        return text.replace(str(self.root), "<tmp>").strip()

    def cli(self, *argv: str | Path) -> tuple[str, str, int]:
        """`xdner ARGV` through the real entry point: (command line, stdout+stderr, exit status)."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = xdner([str(a) for a in argv])
            except SystemExit as exc:  # argparse errors
                code = int(exc.code or 0)
        return self.show("xdner " + " ".join(map(str, argv))), self.show(out.getvalue()), code

    def outcome(self, fn: Callable[[], str]) -> str:
        """What a reader/loader returns, or the exception it raises, verbatim."""
        try:
            return self.show(fn())
        except Exception as exc:  # recorded, not handled: this is what the user would see
            return self.show(f"{type(exc).__name__}: {exc}")


def first_lines(text: str, n: int = MAX_LINES) -> str:
    lines = [l for l in text.splitlines() if l.strip()]
    return "\n".join(lines[:n] + ([f"... ({len(lines) - n} more lines)"] if len(lines) > n else []))


def read_summary(path: Path) -> str:
    sents = read_conll(path, "xx")
    tokens = [t for s in sents for t in s.tokens]
    shown = ", ".join(repr(t) for t in tokens[:4]) + (", ..." if len(tokens) > 4 else "")
    return f"read_conll: accepted, {len(sents)} sentence(s), {len(tokens):,} tokens ({shown}); tags {sorted({t for s in sents for t in s.tags or []})}"


def conll_cases(box: Sandbox, tokenizer: PreTrainedTokenizerBase) -> list[Row]:
    """Single CoNLL files: `xdner validate FILE`, then `read_conll` as a run reads it."""
    long = "".join(f"w{i}\t{'B-PER' if i % 50 == 0 else 'O'}\n" for i in range(10_000))
    files = {
        "a line with no tag column": ("no-tag.txt", "Anna\tB-PER\nlonely\nBerlin\tB-LOC\n"),
        "a tag outside the IOB2 scheme": ("bad-tag.txt", "Anna\tB_PER\nBerlin\tLOC\n"),
        "empty file": ("empty.txt", ""),
        "non-UTF-8 file (Latin-1)": ("latin1.txt", "Müller\tB-PER\nlebt\tO\n".encode("latin-1")),
        "mixed TAB / space separators": ("mixed.txt", "Anna\tB-PER\nSchmidt I-PER\nlives O\nin\tO\n"),
        "CRLF line endings": ("crlf.txt", CLEAN.replace("\n", "\r\n")),
        "UTF-8 byte-order mark": ("bom.txt", "\ufeff" + CLEAN),
        "a sentence of one token": ("one-token.txt", "Berlin\tB-LOC\n"),
        "a 10,000-token sentence": ("long.txt", long),
        "control characters in tokens (U+0007 BEL)": ("control.txt", "An\x07na\tB-PER\nlives\tO\n"),
        "zero-width characters in tokens (U+200B, U+2060)": ("zero-width.txt", "Ber\u200blin\tB-LOC\nis\tO\nbig\u2060\tO\n"),
    }
    rows = []
    for name, (rel, content) in files.items():
        path = box.write(f"files/{rel}", content)
        command, output, code = box.cli("validate", path)
        reader = box.outcome(lambda: read_summary(path))
        if name == "a 10,000-token sentence":
            reader += "; " + box.outcome(lambda: windows_summary(path, tokenizer))
        rows.append(Row(name, command, output, code, reader))
    return rows


def windows_summary(path: Path, tokenizer: PreTrainedTokenizerBase) -> str:
    """How `encode` windows the sentence (max_length 128) and whether every word gets a prediction."""
    sents = read_conll(path, "xx")
    wins = encode(sents, tokenizer, 128)
    merged = merge_predictions(wins, [np.zeros(len(w), np.int64) for w in wins], [len(s.tokens) for s in sents])
    return f"encode: {len(wins)} overlapping windows of ≤ 128 subwords, merged back to {len(merged[0]):,} word predictions (none truncated)"


def label_cases(box: Sandbox) -> list[Row]:
    """Label sets across languages and splits: `xdner validate DIR`, then `build_corpus`."""
    def lang(root: str, code: str, train: str, test: str) -> dict[str, str]:
        return {split: str(box.write(f"{root}/{code}/{split}.txt", text)) for split, text in
                (("train", train), ("dev", train), ("test", test))}

    per = "Anna\tB-PER\nlives\tO\nin\tO\nBerlin\tB-LOC\n"
    misc = per + "\nthe\tO\nOlympics\tB-MISC\n"
    cases = {
        "inconsistent label sets between languages (MISC only in yy)": ("langs", {"xx": (per, per), "yy": (misc, misc)}),
        "a label in test never seen in train (B-MISC)": ("splits", {"xx": (per, misc)}),
    }
    rows = []
    for name, (root, langs) in cases.items():
        files = {code: lang(root, code, train, test) for code, (train, test) in langs.items()}
        command, output, code = box.cli("validate", box.root / root)

        def corpus() -> str:
            c = build_corpus(DataConfig(files=files), list(files), seed=0)
            unseen = c.stats.get("labels_not_in_train")
            return (f"build_corpus: accepted, one label set for all languages {c.labels.tags}"
                    + (f"; report lists labels_not_in_train {unseen}" if unseen else ""))

        rows.append(Row(name, command, output, code, box.outcome(corpus)))
    return rows


def language_case(box: Sandbox) -> Row:
    path = box.write("languages/xx.yaml", LANGUAGE_YAML)
    command, output, code = box.cli("validate", path)
    return Row("a language YAML with a missing field (word_segmentation)", command, output, code,
               box.outcome(lambda: f"load_language: {load_language('xx', path.parent)}"))


def tiny_tokenizer(texts: list[str]) -> BertTokenizerFast:
    from tokenizers import BertWordPieceTokenizer

    wp = BertWordPieceTokenizer(lowercase=False)
    wp.train_from_iterator(texts, vocab_size=200, min_frequency=1)
    return BertTokenizerFast(tokenizer_object=wp._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                             cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def tiny_teacher(tokenizer: PreTrainedTokenizerBase, num_labels: int) -> BertForTokenClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=130, num_labels=num_labels)
    return BertForTokenClassification(config).eval()


def cache_cases(box: Sandbox, tokenizer: PreTrainedTokenizerBase, teacher: BertForTokenClassification) -> list[Row]:
    """A damaged transfer-cache shard, through what `xdner annotate` runs (`is_complete`, then
    `annotate` for what is not), and read directly as `xdner distil` does without annotate."""
    sents = [Sentence(f"Anna lives in Berlin number {i} .".split(), None, "xx") for i in range(40)]
    windows = encode(sents, tokenizer, 16)
    langs = ["xx"] * len(windows)
    scanned = cache_mod.scan("teacher", "tok", zip(windows, langs), [1], 16)
    fp = scanned.fingerprint
    out = box.root / "cache"
    acc = Accelerator(cpu=True)

    def annotate() -> None:
        cache_mod.annotate(teacher, lambda: zip(windows, langs), scanned, [1], out, tokenizer.pad_token_id, 8, acc, shard_size=16)

    annotate()
    target = out / "shard-00001" / "hidden.npy"
    original = target.read_bytes()
    rows = []
    for name, damaged in (("a transfer-cache shard truncated by 10 bytes", original[:-10]),
                          ("a transfer-cache shard with one byte flipped (same size)", original[:-3] + bytes([original[-3] ^ 0xFF]) + original[-2:])):
        target.write_bytes(damaged)
        found = cache_mod.is_complete(out, fp)
        others = {p: p.stat().st_mtime_ns for p in out.glob("shard-0000[02]/*.npy")}
        annotate()
        untouched = all(p.stat().st_mtime_ns == t for p, t in others.items())
        result = ("re-annotated, bytes identical to the original" if target.read_bytes() == original
                  else "NOT re-annotated (its skip check compares sizes only): the shard is still damaged")
        message = (f"is_complete(size + sha256, what `xdner annotate` and `xdner distil` check) = {found}\n"
                   f"cache.annotate: damaged shard {result}; other shards {'untouched' if untouched else 'rewritten'}")
        rows.append(Row(name, "xdner annotate (cache.is_complete, then cache.annotate)", message, None,
                        f"after annotate: is_complete = {cache_mod.is_complete(out, fp)}"))
    target.write_bytes(original[:-10])

    def distil_reads() -> str:
        view = cache_mod.TransferCache(out)
        return f"TransferCache: {len(view)} windows, item 20 hidden {view[20]['teacher_hidden'].shape}"

    message = box.outcome(distil_reads)
    annotate()
    rows.append(Row("a truncated shard read by `xdner distil` without `annotate` first", "TransferCache(out), as xdner distil opens it",
                    message, None, f"`xdner annotate` (or `xdner run`) rebuilds it: is_complete = {cache_mod.is_complete(out, fp)}"))
    return rows


def checkpoint_cases(box: Sandbox, tokenizer: PreTrainedTokenizerBase, teacher: BertForTokenClassification) -> list[Row]:
    """A damaged student through `xdner predict` (what a user loads), and a damaged teacher
    through `load_teacher` (what `xdner annotate`/`distil`/`evaluate` call)."""
    labels = ["O", "B-PER", "I-PER"]
    docs = box.write("docs.txt", "Anna lives in Berlin .\n")
    rows = []
    for rel, name, damage in (
        ("truncated", "a truncated student checkpoint (model.safetensors cut in half)", lambda b: b[: len(b) // 2]),
        ("flipped", "a student checkpoint with one byte flipped in model.safetensors", lambda b: b[:-5] + bytes([b[-5] ^ 0xFF]) + b[-4:]),
        ("no-manifest", "a truncated student checkpoint written before manifests (no manifest.json)", lambda b: b[:100]),
    ):
        model_dir = box.root / "students" / rel
        torch.manual_seed(0)
        student = BiLSTMForTokenClassification(BiLSTMStudentConfig(
            embedding_dim=8, hidden_dim=8, dropout=0.0, vocab_size=len(tokenizer) + 2, teacher_vocab_size=len(tokenizer),
            teacher_hidden_size=16, max_length=32, **config_kwargs({"labels": labels})))
        student.set_vocabulary(np.arange(len(tokenizer)), tokenizer.pad_token_id)
        save_student(student, model_dir, tokenizer)
        if rel == "no-manifest":
            (model_dir / "manifest.json").unlink()
        weights = model_dir / "model.safetensors"
        weights.write_bytes(damage(weights.read_bytes()))
        command, output, code = box.cli("predict", "--model", model_dir, docs)
        rows.append(Row(name, command, output, code, box.outcome(lambda: f"load_student: {load_student(model_dir).labels}")))
    # A finished run's teacher, then `xdner annotate` on that run (data: the label cases' files).
    teacher_dir = box.root / "run" / "teacher"
    _save(teacher, tokenizer, teacher_dir, Accelerator(cpu=True), {"best_epoch": 1, "best_dev_macro_f1": 50.0})
    weights = teacher_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    files = {split: str(box.root / "splits" / "xx" / f"{split}.txt") for split in ("train", "dev", "test")}
    config = box.write("run.yaml", yaml.safe_dump({"output_dir": str(box.root / "run"), "languages": ["xx"], "data": {"files": {"xx": files}}}))
    command, output, code = box.cli("annotate", "--config", config)
    rows.append(Row("a truncated teacher checkpoint (OUTPUT_DIR/teacher/model.safetensors)", command, output, code,
                    box.outcome(lambda: str(load_teacher(str(teacher_dir), LabelSet(("PER",)))))))
    return rows


def run_pytest(args: list[str]) -> tuple[str, str, dict[str, dict[str, object]]]:
    """Run pytest in a fresh process: (command, output, per-test outcome and seconds from JUnit XML)."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", f"--junitxml={xml}"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        results: dict[str, dict[str, object]] = {}
        if xml.exists():
            for case in ET.parse(xml).iter("testcase"):
                test_id = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
                failed = any(child.tag in ("failure", "error") for child in case)
                skipped = any(child.tag == "skipped" for child in case)
                results[test_id] = {"outcome": "failed" if failed else "skipped" if skipped else "passed",
                                    "seconds": round(float(case.get("time", 0)), 1)}
    shown = ["python3", "-m", "pytest", *args]
    return " ".join(shown), proc.stdout + proc.stderr, results


def scenarios() -> tuple[str, list[dict[str, object]]]:
    tests = sorted({test for _, test in SCENARIO_TESTS.values()})
    command, output, results = run_pytest([*tests, "-q"])
    rows = []
    for name, (outcome, test) in SCENARIO_TESTS.items():
        matching = {k: v for k, v in results.items() if k == test or k.startswith(test + "[")}
        status = ", ".join(f"{v['outcome']} ({v['seconds']} s)" for v in matching.values()) or "not run: " + first_lines(output, 2)
        rows.append({"scenario": name, "outcome": outcome, "test": test, "result": status})
    return command, rows


def hypothesis_statistics() -> tuple[str, list[dict[str, object]]]:
    """Per property test: examples tried and why generation stopped, from Hypothesis's own report."""
    command, output, results = run_pytest([*HYPOTHESIS_FILES, "-q", "--hypothesis-show-statistics"])
    rows = []
    for block in re.split(r"\n(?=tests/\S+::\S+:\n)", output.split("Hypothesis Statistics", 1)[-1]):
        head = re.match(r"\s*(tests/\S+::\S+):", block)
        counts = re.search(r"(\d+) passing examples?, (\d+) failing examples?, (\d+) invalid examples?", block)
        if not head or not counts:
            continue
        stop = re.search(r"- Stopped because (.+)", block)
        rows.append({"test": head.group(1), "passing": int(counts.group(1)), "failing": int(counts.group(2)),
                     "invalid": int(counts.group(3)), "stopped_because": stop.group(1).strip() if stop else "",
                     "result": results.get(head.group(1), {}).get("outcome", "?")})
    return command, rows


def cell(text: object) -> str:
    """A Markdown table cell: `<tmp>` and `<TAB>` in messages must not read as HTML tags."""
    if text in (None, ""):
        return "—"
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", "<br>")


def render(report: dict) -> str:
    lines = [
        "# Reliability acceptance table (#8)", "",
        f"Generated by `python benchmarks/reliability.py` in {report['seconds']:.0f} s. Every row ran through the real code "
        "path named in *command*; *message* is what it printed or raised, verbatim (first lines; temp paths shown as "
        "`<tmp>`); where the command is a library call (exit code —), it shows what the calls returned or raised. "
        "`xdner validate` exits 1 on errors and 0 on warnings only; other commands exit 2 on a reported error. "
        "*What a run does* is what the run's own reader or loader does with the same input.", "",
        "## Bad inputs", "",
        "| # | input tried | command | message shown | exit code | what a run does |", "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(report["inputs"], 1):
        lines.append(f"| {i} | {cell(r['input'])} | `{r['command']}` | {cell(first_lines(r['message']))} | {cell(r['exit_code'])} | {cell(r['reader'])} |")
    lines += ["", "## Corruption and interruption", "",
              f"The tests were run by this script (`{report['scenario_command']}`).", "",
              "| scenario | outcome | checked by | result |", "|---|---|---|---|"]
    for s in report["scenarios"]:
        lines.append(f"| {cell(s['scenario'])} | {cell(s['outcome'])} | `{s['test']}` | {cell(s['result'])} |")
    lines += ["", "What Ctrl-C prints (from `interrupted_message`, for `xdner run my.yaml`):", "", "```",
              report["sigint_message"], "```", "",
              "## Hypothesis property tests", "", f"`{report['hypothesis_command']}`", "",
              "| test | passing examples | failing | invalid (filtered) | stopped because | result |", "|---|---|---|---|---|---|"]
    for h in report["hypothesis"]:
        lines.append(f"| `{h['test']}` | {h['passing']} | {h['failing']} | {h['invalid']} | {cell(h['stopped_because'])} | {h['result']} |")
    return "\n".join(lines) + "\n"


def run() -> dict:
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="xdner-reliability-") as tmp:
        box = Sandbox(Path(tmp))
        tokenizer = tiny_tokenizer([CLEAN.replace("\t", " ")] * 3 + [f"w{i} number {i} Anna lives in Berlin ." for i in range(300)])
        teacher = tiny_teacher(tokenizer, num_labels=3)
        rows = [*conll_cases(box, tokenizer), *label_cases(box), language_case(box),
                *cache_cases(box, tokenizer, teacher), *checkpoint_cases(box, tokenizer, teacher)]
    scenario_command, scenario_rows = scenarios()
    hypothesis_command, hypothesis_rows = hypothesis_statistics()
    return {
        "inputs": [asdict(r) for r in rows],
        "scenario_command": scenario_command,
        "scenarios": scenario_rows,
        "sigint_message": interrupted_message("run", ["run", "my.yaml"], "runs/mine").strip(),
        "hypothesis_command": hypothesis_command,
        "hypothesis": hypothesis_rows,
        "seconds": round(time.time() - t0, 1),
    }


def main() -> None:
    report = run()
    write_json(RESULTS / "reliability.json", report)
    write_text(RESULTS / "reliability.md", render(report))
    print(render(report))


if __name__ == "__main__":
    main()
