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
import hashlib
import importlib
import json
import sys
import tempfile
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from xdner_runtime.onnx import INPUTS, OUTPUT, WEIGHTS_KEY

from .errors import XdnerError
from .io import atomic_path

if TYPE_CHECKING:  # torch is imported inside the functions, so `xdner --help` and the other commands start without it
    import torch

    from .students import XtremeDistilPreTrainedModel

MIN_OPSET = 14  # the transformer student's attention exports from 14 on (the BiLSTM's from 9); measured with torch 2.13


def weights_sha256(student: XtremeDistilPreTrainedModel) -> str:
    """sha256 over the student's tensors (names, dtypes, shapes and bytes, in name order): what
    an exported graph records, so it is only ever run with the student it came from."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(student.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_opset(opset: int) -> None:
    """Opsets both student types export at with the installed torch's TorchScript exporter."""
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as top

    if not MIN_OPSET <= opset <= top:
        raise XdnerError(f"--opset {opset}: students export at opsets {MIN_OPSET} to {top} (the transformer student needs "
                         f"{MIN_OPSET}; this torch's exporter stops at {top})")


def export_onnx(student: XtremeDistilPreTrainedModel, path: Path, opset: int = 17) -> Path:
    """Write `student` (in eval mode, on the CPU) to `path` atomically, its weights' sha256 in
    the graph's metadata."""
    import torch

    class Logits(torch.nn.Module):
        """The student's logits as the graph's single output (its forward returns a dict)."""

        def __init__(self) -> None:
            super().__init__()
            self.student = student

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.student(input_ids, attention_mask).logits

    check_opset(opset)
    student = student.cpu().eval()
    # A traced example with batch > 1 and a padded row: nothing is specialised to batch 1 or to
    # full rows; the dynamic axes make every size a runtime input.
    ids = torch.arange(16, dtype=torch.long).reshape(2, 8) % int(student.config.teacher_vocab_size)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, OUTPUT)}
    # The wrapper starts in eval mode: the exporter restores the module's own mode afterwards,
    # and a fresh (training-mode) wrapper would switch the caller's student to training.
    wrapper = Logits().eval()
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
        onnx = _optional("onnx")
        graph = onnx.load(str(tmp))
        graph.metadata_props.add(key=WEIGHTS_KEY, value=weights_sha256(student))
        onnx.save(graph, str(tmp))
    return Path(path)


def _optional(name: str) -> ModuleType:
    """`onnx`, which writing and quantising a graph need (running one does not): the `onnx`
    extra, not a dependency."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"ONNX export needs {name}: pip install 'xtremedistil-ner[onnx]'") from exc


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantisation (weights int8, activations quantised at run time): no
    calibration data needed, and the LSTM and linear layers are where the time goes."""
    _optional("onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(Path(dst)) as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
    return Path(dst)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`xdner export`, handled by `run_export`."""
    text = "export a distilled student for inference runtimes"
    p = subparsers.add_parser("export", help=text, description=text)
    p.add_argument("--model", type=Path, required=True, help="a student directory (e.g. students/NAME/joint/model)")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--output", type=Path, help="output file (default: DIR/model.onnx, or DIR/model.int8.onnx with --int8)")
    p.add_argument("--int8", action="store_true", help="dynamic int8 quantisation with onnxruntime")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(handler=run_export)
    return p


def run_export(args: argparse.Namespace) -> int:
    check_opset(args.opset)  # before loading anything
    from .students import load_student

    student = load_student(args.model)
    output = args.output or args.model / ("model.int8.onnx" if args.int8 else "model.onnx")
    if args.int8:
        with tempfile.TemporaryDirectory() as tmp:
            quantize_int8(export_onnx(student, Path(tmp) / "model.onnx", args.opset), output)
    else:
        export_onnx(student, output, args.opset)
    print(f"wrote {output}", file=sys.stderr)
    return 0
