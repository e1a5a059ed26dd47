"""`xdner serve --model DIR [--onnx FILE]`: the runtime's HTTP service (`xdner_runtime.serve`)
over a PyTorch student, or over an exported graph without touching PyTorch's model code."""

from __future__ import annotations

import argparse

from xdner_runtime.command import add_arguments, start

from .threads import configure_threads


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`xdner serve`, handled by `run_serve`."""
    text = "serve a distilled student over HTTP: POST /tag, a page to try it at /, /health and /metrics"
    p = subparsers.add_parser("serve", help=text, description=text)
    add_arguments(p, onnx_required=False)
    p.set_defaults(handler=run_serve)
    return p


def run_serve(args: argparse.Namespace) -> int:
    from .tagger import Tagger  # torch: only once the command runs

    configure_threads(args.threads)  # torch's threads, which an ONNX graph's session uses too
    start(args, Tagger.load(args.model, batch_size=args.max_batch, onnx=args.onnx))
    return 0
