"""xtremedistil-ner's torch-free runtime: raw text in, entities out, with a distilled student
exported to ONNX (`Tagger.load(model_dir, onnx=graph)`), and `xdner-serve` (the `serve` extra)."""

from .tagger import Tagger
from .tags import Entity
from .words import split_words

__version__ = "0.1.0"
__all__ = ["Entity", "Tagger", "split_words"]
