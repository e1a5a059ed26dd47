"""A distilled student as a tagger: raw text or pre-tokenised sentences in, entities or IOB2
tags out, from the student folder alone (weights, config, the teacher's tokenizer).

`pipeline("token-classification", model=DIR)` loads the same folder; the Tagger is for what the
pipeline does not do: split raw text into the words the students were trained on (the
pipeline's words are the tokenizer's whitespace-separated pieces, so "Paris." is one word
there and two here, and Han or Thai text has no word boundaries at all), tag pre-tokenised
sentences with IOB2 tags, and batch many documents by length.

Everything but the model call is the torch-free runtime's (`xdner_runtime.Tagger`: word
splitting, windows, merging, entities), so a student tags alike here, exported to ONNX, and
behind `xdner serve`; this class plugs the PyTorch student in as its backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xdner_runtime
from transformers import PreTrainedTokenizerBase

from .encoding import word_pieces
from .scoring import logits_fn
from .students import XtremeDistilPreTrainedModel, load_student
from .teacher import load_tokenizer


class Tagger(xdner_runtime.Tagger):
    """`tagger(text)` -> entities, `tagger([text, ...])` -> entities per text,
    `tagger.tag_tokens([[word, ...], ...])` -> IOB2 tags per sentence, with a PyTorch student."""

    def __init__(
        self, student: XtremeDistilPreTrainedModel, tokenizer: PreTrainedTokenizerBase, device: str | torch.device = "cpu",
        batch_size: int = 64, max_length: int | None = None,
    ) -> None:
        max_length = int(max_length or student.config.max_length)
        limit = student.max_positions()
        if limit is not None and max_length > limit:
            raise ValueError(f"max_length {max_length} is longer than the {limit} positions this {student.config.model_type} student has")
        self.student = student.to(device).eval()
        self.device = torch.device(device)
        self.tokenizer = tokenizer
        self._logits = logits_fn(self.student)
        super().__init__(self._torch_probabilities, word_pieces(tokenizer), student.labels, max_length, batch_size)

    @classmethod
    def load(cls, path: Path | str, device: str | torch.device = "cpu", batch_size: int = 64,  # type: ignore[override]
             onnx: Path | str | None = None) -> xdner_runtime.Tagger:
        """From a student folder (e.g. `students/NAME/joint/model`) saved with its tokenizer.
        `onnx`: a graph `xdner export` wrote from that student (e.g. `model.int8.onnx`), run by
        the torch-free runtime on the CPU instead of PyTorch."""
        path = Path(path)
        if onnx is not None:
            if torch.device(device).type != "cpu":
                raise ValueError(f"an ONNX graph runs on the CPU (onnxruntime), not on {device}")
            return xdner_runtime.Tagger.load(str(path), str(onnx), batch_size, threads=torch.get_num_threads())
        student = load_student(path)
        if not (path / "tokenizer_config.json").is_file():
            raise FileNotFoundError(
                f"{path}: no tokenizer files; this student was saved without the teacher's tokenizer "
                f"(re-save it with save_student(model, path, tokenizer))"
            )
        return cls(student, load_tokenizer(str(path)), device, batch_size)

    @torch.inference_mode()
    def _torch_probabilities(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        ids, mask = torch.from_numpy(input_ids).to(self.device), torch.from_numpy(attention_mask).to(self.device)
        return self._logits(ids, mask).float().softmax(-1).cpu().numpy()
