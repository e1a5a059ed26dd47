"""`xdner export --model DIR --format onnx`: a student as an ONNX graph (`input_ids`,
`attention_mask` int64 [batch, seq] -> `logits` float32 [batch, seq, labels], both axes dynamic),
optionally int8 dynamically quantised with onnxruntime.

The graph takes the teacher's subword ids (the vocabulary map is inside it), so the tokenizer
saved with the student is all a runtime needs besides the labels (`id2label` in its `config.json`).
It uses torch's TorchScript exporter (`dynamo=False`): the torch.export-based default needs the
`onnxscript` package, which is not a dependency, and the BiLSTM (a gather instead of
pack_padded_sequence) traces without data-dependent control flow, so tracing is exact here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .batching import LengthBatchSampler, WindowDataset, batch_loader
from .encoding import Window
from .evaluate import LogitsFn
from .io import atomic_path
from .students import XtremeDistilPreTrainedModel, load_student

INPUTS = ("input_ids", "attention_mask")
OUTPUT = "logits"


class _Logits(nn.Module):
    """The student's logits as the graph's single output (its forward returns a dict)."""

    def __init__(self, student: XtremeDistilPreTrainedModel) -> None:
        super().__init__()
        self.student = student

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.student(input_ids, attention_mask).logits


def export_onnx(student: XtremeDistilPreTrainedModel, path: Path, opset: int = 17) -> Path:
    """Write `student` (in eval mode, on the CPU) to `path` atomically."""
    student = student.cpu().eval()
    # A traced example with batch > 1 and a padded row: nothing is specialised to batch 1 or to
    # full rows; the dynamic axes make every size a runtime input.
    ids = torch.arange(16, dtype=torch.long).reshape(2, 8) % int(student.config.teacher_vocab_size)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, OUTPUT)}
    # The wrapper starts in eval mode: the exporter restores the module's own mode afterwards,
    # and a fresh (training-mode) wrapper would switch the caller's student to training.
    wrapper = _Logits(student).eval()
    with atomic_path(Path(path)) as tmp, warnings.catch_warnings():
        # Noise that does not apply here: the legacy exporter's deprecation notices; its LSTM
        # batch-size caution (no initial state is passed, so the runtime builds zeros of the
        # input's batch size; the tests check several batch sizes against PyTorch); and
        # nn.LSTM's own input-shape checks, which the tracer reports as constant branches.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*LSTM")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.modules\.rnn")
        # The transformer student's mask helpers branch on shapes that are equal for every input
        # (the padding length is 0 and the mask is always given); tests check several shapes.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"transformers\.")
        torch.onnx.export(
            wrapper, (ids, mask), str(tmp), input_names=list(INPUTS), output_names=[OUTPUT],
            dynamic_axes=axes, opset_version=opset, dynamo=False,
        )
    return Path(path)


def _onnxruntime() -> ModuleType:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError("int8 export and ONNX inference need onnxruntime: pip install 'xtremedistil-ner[onnx]'") from exc
    return onnxruntime


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantisation (weights int8, activations quantised at run time): no
    calibration data needed, and the LSTM and linear layers are where the time goes."""
    _onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(Path(dst)) as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
    return Path(dst)


def onnx_session(path: Path, threads: int | None = None) -> Any:
    """A CPU `InferenceSession` with `threads` intra-op threads (default: torch's count) and one
    inter-op thread, so ONNX and PyTorch timings use the same cores."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session: Any) -> LogitsFn:
    """An exported graph as a `LogitsFn` (torch tensors in and out), so `predict_tags` and
    `latency.measure` run it exactly like a student's `logits`."""

    def fn(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {name: t.cpu().numpy().astype(np.int64, copy=False) for name, t in zip(INPUTS, (input_ids, attention_mask))}
        (logits,) = session.run([OUTPUT], feeds)
        return torch.from_numpy(logits)

    return fn


@torch.inference_mode()
def compare_logits(
    reference: LogitsFn, others: Mapping[str, LogitsFn], windows: Sequence[Window], pad_id: int, batch_size: int = 64
) -> dict[str, dict[str, float]]:
    """How far each of `others` (exported graphs) is from `reference` (the PyTorch student) on
    real windows: max |logit difference| and the share of positions with the same argmax, over
    unpadded positions only; the reference runs once for all of them."""
    worst = dict.fromkeys(others, 0.0)
    agree = dict.fromkeys(others, 0)
    total = 0
    sampler = LengthBatchSampler([len(w) for w in windows], batch_size, shuffle=False)
    for batch in batch_loader(WindowDataset(windows), sampler, pad_id):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        real = mask.bool()
        want = reference(ids, mask).float().cpu()
        for name, fn in others.items():
            got = fn(ids, mask).float().cpu()
            worst[name] = max(worst[name], float((got - want).abs()[real].max()))
            agree[name] += int((got.argmax(-1) == want.argmax(-1))[real].sum())
        total += int(real.sum())
    return {name: {"max_abs_logit_diff": worst[name], "argmax_agreement": agree[name] / max(total, 1), "positions": total}
            for name in others}


def run_export(args: argparse.Namespace) -> int:
    student = load_student(args.model)
    output = args.output or args.model / ("model.int8.onnx" if args.int8 else "model.onnx")
    if args.int8:
        with tempfile.TemporaryDirectory() as tmp:
            quantize_int8(export_onnx(student, Path(tmp) / "model.onnx", args.opset), output)
    else:
        export_onnx(student, output, args.opset)
    print(f"wrote {output}", file=sys.stderr)
    return 0
