"""`xdner predict --model DIR INPUT`: tag a text file (one document per line), a CoNLL file (its
tags ignored) or stdin with a saved student, in chunks so memory stays bounded on any input size.

Output is JSONL (`{"text", "entities"}` per input document; for CoNLL input the text is the
sentence's tokens joined by single spaces and the offsets point into it) or CoNLL (`token<TAB>tag`,
blank line between documents). Every input line of a text file is a document, empty ones
included, so output line N always belongs to input line N.
"""

from __future__ import annotations

import argparse
import codecs
import io
import json
import sys
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import IO, BinaryIO, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from .data.conll import LineProblem, format_conll, parse_conll
from .errors import XdnerError
from .io import atomic_path
from .tagger import Tagger, entities, split_words

CHUNK = 1024  # documents per chunk: enough for full length-sorted batches, bounded memory

# One document: its text and its words' character spans in that text.
Document = tuple[str, list[tuple[int, int]]]


def run_predict(args: argparse.Namespace) -> int:
    if args.onnx and args.device != "cpu":
        print("xdner: error: --onnx runs on the CPU (onnxruntime); drop --device cuda", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("xdner: error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    check_paths(args)
    tagger = Tagger.load(args.model, device=args.device, batch_size=args.batch_size, onnx=args.onnx)
    out_format = args.format or ("conll" if args.input_format == "conll" else "jsonl")
    with ExitStack() as stack:
        raw = sys.stdin.buffer if args.input == "-" else stack.enter_context(open(args.input, "rb"))
        source = decoded_lines(raw, args.encoding, "<stdin>" if args.input == "-" else args.input)
        docs = read_documents(source, args.input_format, args.input)
        if args.output is None:
            write_predictions(tagger, docs, out_format, sys.stdout)
        else:
            tmp = stack.enter_context(atomic_path(args.output))
            with open(tmp, "w", encoding="utf-8", newline="\n") as sink:
                write_predictions(tagger, docs, out_format, sink)
    return 0


def check_paths(args: argparse.Namespace) -> None:
    """The input and `--output` are files (or stdin/stdout), and the encoding exists, before
    the model is loaded."""
    for what, path in (("the input", args.input), ("--output", args.output)):
        if path not in (None, "-") and Path(path).is_dir():
            raise XdnerError(f"{path}: is a directory; {what} must be a file")
    try:
        codecs.lookup(args.encoding)
    except LookupError:
        raise XdnerError(f"--encoding {args.encoding}: no such encoding (e.g. utf-8, latin-1, cp1252, utf-16)") from None


def decoded_lines(raw: BinaryIO, encoding: str, name: str) -> Iterator[str]:
    """The lines of a byte stream, decoded incrementally (bounded memory on any input), split at
    \\n, \\r\\n and \\r only (never at U+2028 and friends, which may sit inside tokens), a leading
    BOM dropped. Bytes that are not `encoding` are a one-line error naming their byte offset."""
    decoder = codecs.getincrementaldecoder(encoding)()
    newlines = io.IncrementalNewlineDecoder(decoder, translate=True)
    offset, tail, first = 0, "", True
    while True:
        chunk = raw.read(1 << 16)
        pending = len(decoder.getstate()[0])  # bytes of a character cut at the previous chunk's end
        try:
            text = newlines.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            at = offset - pending + exc.start
            raise XdnerError(f"{name}: not valid {encoding} at byte offset {at} (byte 0x{exc.object[exc.start]:02x}); "
                             "pass --encoding with the file's encoding (e.g. --encoding latin-1), or re-encode it as UTF-8") from None
        offset += len(chunk)
        if first and text:
            text, first = text.removeprefix("\ufeff"), False
        *lines, tail = (tail + text).split("\n")
        yield from lines
        if not chunk:
            break
    if tail:
        yield tail


def read_documents(source: Iterable[str], input_format: str, name: str) -> Iterator[Document]:
    """Documents one at a time. Universal newlines only split on \\n, \\r and \\r\\n, never on
    U+2028 and friends, which may sit inside tokens (as in `decode_lines`)."""
    lines = (line.rstrip("\r\n") for line in source)
    if input_format == "text":
        for line in lines:
            yield line, split_words(line)
        return
    for item in parse_conll(lines, with_tags=False):
        if isinstance(item, LineProblem):
            raise item.error(Path(name))
        text, spans, pos = [], [], 0
        for token in item.tokens:
            spans.append((pos, pos + len(token)))
            text.append(token)
            pos += len(token) + 1
        yield " ".join(text), spans


def write_predictions(tagger: Tagger, docs: Iterable[Document], out_format: str, sink: IO[str]) -> None:
    docs = iter(docs)
    with tqdm(desc="predict", unit="doc", file=sys.stderr) as bar:
        while chunk := list(islice(docs, CHUNK)):
            words = [[text[s:e] for s, e in spans] for text, spans in chunk]
            predicted = tagger.predict(words)
            if out_format == "conll":
                sink.writelines(format_conll((w, tags) for w, (tags, _) in zip(words, predicted) if w))
            else:
                for (text, spans), (tags, scores) in zip(chunk, predicted):
                    record = {"text": text, "entities": entities(text, spans, tags, scores)}
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            bar.update(len(chunk))
