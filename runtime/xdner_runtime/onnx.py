"""A student folder plus a graph `xdner export` wrote from it -> a `Tagger` on onnxruntime.

The folder gives the labels (`config.json`'s `id2label`), the window length and the teacher's
tokenizer (`tokenizer.json`, with `tokenizer_config.json` naming its special tokens); the graph
takes the teacher's subword ids (`input_ids`, `attention_mask` int64 [batch, seq] -> `logits`
float32 [batch, seq, labels]) and records the sha256 of the weights it was exported from, which
must be the folder's, so labels and tokenizer are never paired with another student's graph.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError
from .tagger import Probabilities, Tagger
from .windows import SpecialIds, WordPieces

INPUTS = ("input_ids", "attention_mask")
OUTPUT = "logits"
WEIGHTS_KEY = "xdner.student_weights_sha256"  # in the graph's metadata_props: the student it was exported from
WEIGHTS = "model.safetensors"

logger = logging.getLogger(__name__)


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota
    (containers often get fewer CPUs than the machine has)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def weights_sha256(path: Path) -> str:
    """sha256 over a safetensors file's tensors (names, dtypes as torch names them, shapes and
    bytes, in name order): the digest `xdner export` records, computed without torch."""
    from safetensors import safe_open

    h = hashlib.sha256()
    with safe_open(str(path), framework="numpy") as f:
        for name in sorted(f.keys()):
            t = np.ascontiguousarray(f.get_tensor(name))
            h.update(json.dumps([name, f"torch.{t.dtype.name}", list(t.shape)]).encode())
            h.update(t.reshape(-1).view(np.uint8).tobytes())
    return h.hexdigest()


def session(path: Path, threads: int | None = None) -> Any:
    """A CPU `InferenceSession` with `threads` intra-op threads (default: the available cores)
    and one inter-op thread."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf, NoSuchFile

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except (Fail, InvalidGraph, InvalidProtobuf, NoSuchFile) as exc:
        raise ArtifactError(f"{path}: not an ONNX graph onnxruntime can run ({str(exc).splitlines()[0]})") from None


def check_graph(sess: Any, graph: Path, folder: Path, labels: int) -> None:
    """Refuse a graph exported from another student than the one in `folder`."""
    width = sess.get_outputs()[0].shape[-1]
    recorded = sess.get_modelmeta().custom_metadata_map.get(WEIGHTS_KEY)
    digest = weights_sha256(folder / WEIGHTS)
    if width != labels or recorded != digest:
        raise ArtifactError(f"{graph}: the graph was exported from another student than the one in {folder} "
                            f"({width} labels, {labels} there; weights sha256 {str(recorded)[:12]}, "
                            f"{digest[:12]} there); export it again: xdner export --model {folder}")


def probabilities(sess: Any) -> Probabilities:
    """The graph's logits as tag probabilities (a float32 softmax over the last axis)."""

    def fn(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        (logits,) = sess.run([OUTPUT], {INPUTS[0]: input_ids, INPUTS[1]: attention_mask})
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    return fn


def folder_config(folder: Path) -> dict[str, Any]:
    """The student's `config.json`, refused with the file named when it is missing or not a student's."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder}: no config.json; pass the folder of a saved student (e.g. students/NAME/joint/model)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: damaged ({exc})") from None
    if not isinstance(config, dict) or "id2label" not in config or "max_length" not in config:
        raise ArtifactError(f"{path}: not a student's config (no id2label or max_length)")
    return config


def word_pieces(folder: Path) -> WordPieces:
    """The teacher's fast tokenizer saved with the student, set up as `transformers` loads it:
    no truncation or padding, and special-token strings in the text split like any other
    text when the tokenizer says so."""
    from tokenizers import Tokenizer

    files = folder / "tokenizer.json", folder / "tokenizer_config.json"
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: no {' or '.join(missing)}; this student was saved without the teacher's fast tokenizer "
                                "(re-save it with save_student(model, path, tokenizer))")
    tokenizer = Tokenizer.from_file(str(files[0]))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    config = json.loads(files[1].read_text(encoding="utf-8"))
    tokenizer.encode_special_tokens = bool(config.get("split_special_tokens", False))

    def token_id(*keys: str) -> int | None:
        for key in keys:
            token = config.get(key)
            if isinstance(token, dict):  # an AddedToken, as older tokenizers save them
                token = token.get("content")
            if token is not None and (tid := tokenizer.token_to_id(token)) is not None:
                return tid
        return None

    cls_id, sep_id = token_id("cls_token", "bos_token"), token_id("sep_token", "eos_token")
    if cls_id is None or sep_id is None:
        raise ArtifactError(f"{files[1]}: the tokenizer defines neither cls/sep nor bos/eos tokens")
    pad_id, unk_id = token_id("pad_token"), token_id("unk_token")
    if unk_id is None:  # as `transformers` reads it: the tokenizer model's own unknown piece
        model = json.loads(files[0].read_text(encoding="utf-8")).get("model", {})
        unk_id = model.get("unk_id") if model.get("unk_token") is None else tokenizer.token_to_id(model["unk_token"])
    pad_id = 0 if pad_id is None else pad_id
    # Then the fallbacks of the windows it was trained on (xtremedistil_ner.encoding.word_pieces).
    return WordPieces(tokenizer, SpecialIds(cls_id, sep_id, pad_id, pad_id if unk_id is None else unk_id))


def load_tagger(path: str | Path, graph: str | Path, batch_size: int = 64, threads: int | None = None) -> Tagger:
    folder, graph = Path(path), Path(graph)
    config = folder_config(folder)
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    if not graph.is_file():
        raise FileNotFoundError(f"{graph}: no such ONNX file (write one with `xdner export --model {folder} --format onnx`)")
    sess = session(graph, threads)
    check_graph(sess, graph, folder, len(labels))
    return Tagger(probabilities(sess), word_pieces(folder), labels, int(config["max_length"]), batch_size)
