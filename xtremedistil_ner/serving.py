"""`xdner serve --model DIR [--onnx FILE]`: the runtime's HTTP service (`xdner_runtime.serve`)
over a PyTorch student, or over an exported graph without touching PyTorch's model code."""

from __future__ import annotations

import argparse

from xdner_runtime.command import start

from .tagger import Tagger
from .threads import configure_threads


def run_serve(args: argparse.Namespace) -> int:
    configure_threads(args.threads)  # torch's threads, which an ONNX graph's session uses too
    start(args, Tagger.load(args.model, batch_size=args.max_batch, onnx=args.onnx))
    return 0
