"""`xdner-serve --model DIR --onnx FILE`: a tagger behind HTTP without PyTorch; also the options
and model description `xdner serve` (the training package, PyTorch or ONNX) shares with it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import XdnerError
from .limits import Limits


def positive_int(text: str) -> int:
    """An argparse type: a count of at least 1 (a usage error otherwise, not a traceback later)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number of milliseconds >= 0")
    return value


def add_arguments(p: argparse.ArgumentParser, onnx_required: bool) -> None:
    d = Limits()
    p.add_argument("--model", type=Path, required=True, help="a student directory saved with its tokenizer (e.g. students/NAME/joint/model)")
    p.add_argument("--onnx", type=Path, required=onnx_required,
                   help="a graph `xdner export` wrote from that student (e.g. DIR/model.int8.onnx), run with onnxruntime"
                        + ("" if onnx_required else " instead of PyTorch"))
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="default: 8000")
    p.add_argument("--threads", type=positive_int, help="CPU threads for the model (default: the cores this process may use)")
    p.add_argument("--max-batch", type=positive_int, default=d.max_batch, help=f"texts gathered into one model call (default {d.max_batch})")
    p.add_argument("--max-wait-ms", type=non_negative_float, default=d.max_wait_ms,
                   help=f"how long the first queued text waits for others to join its batch (default {d.max_wait_ms:g})")
    p.add_argument("--max-body-bytes", type=positive_int, default=d.max_body_bytes, help=f"largest request body (default {d.max_body_bytes})")
    p.add_argument("--max-texts", type=positive_int, default=d.max_texts, help=f"texts in one request (default {d.max_texts})")
    p.add_argument("--max-words", type=positive_int, default=d.max_words, help=f"whitespace-separated words in one text (default {d.max_words})")
    p.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info")


def model_info(folder: Path) -> dict[str, Any]:
    """What the page shows: the card's name, languages and test F1 per language (its front
    matter's model-index), the entity types, and the parameter count its manifest records."""
    import yaml

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    labels = sorted({tag[2:] for tag in config["id2label"].values() if tag != "O"})
    info: dict[str, Any] = {"name": folder.name, "languages": [], "labels": labels, "card": {}}
    card = folder / "README.md"
    if card.is_file() and (text := card.read_text(encoding="utf-8")).startswith("---\n"):
        meta = yaml.safe_load(text[4 : text.index("\n---", 4)]) or {}
        index = (meta.get("model-index") or [{}])[0]
        info["name"] = index.get("name", info["name"])
        info["languages"] = list(meta.get("language") or [])
        for result in index.get("results") or []:
            lang = result.get("dataset", {}).get("config")
            f1 = [m["value"] for m in result.get("metrics", []) if m.get("type") == "f1"]
            if lang and f1:
                info["card"][lang] = f1[0]
    manifest = folder / "manifest.json"
    if manifest.is_file():
        info["parameters"] = json.loads(manifest.read_text(encoding="utf-8")).get("parameters")
    return info


def start(args: argparse.Namespace, tagger: Any) -> None:
    """Serve `tagger` (anything `tagger([text, ...])` -> entities per text) as `args` say."""
    from .serve import serve

    limits = Limits(max_body_bytes=args.max_body_bytes, max_texts=args.max_texts, max_words=args.max_words,
                    max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    info = model_info(args.model)
    print(f"serving {info['name']} on http://{args.host}:{args.port}/ (POST /tag, GET /health, GET /metrics)", file=sys.stderr)
    serve(tagger, info, args.host, args.port, limits, args.log_level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xdner-serve", description="serve a distilled tagger exported to ONNX over HTTP, without PyTorch")
    add_arguments(parser, onnx_required=True)
    args = parser.parse_args(argv)
    from .tagger import Tagger

    try:
        tagger = Tagger.load(str(args.model), str(args.onnx), batch_size=args.max_batch, threads=args.threads)
        start(args, tagger)
    except (XdnerError, FileNotFoundError) as exc:
        print(f"xdner-serve: error: {exc}", file=sys.stderr)
        return 2
    return 0
