"""`xdner predict --model DIR INPUT`: tag a text file (one document per line), a CoNLL file (its
tags kept as gold) or stdin with a saved student, in chunks so memory stays bounded on any input size.

Output is JSONL (`{"text", "entities"}` per input document; for CoNLL input the text is the
sentence's tokens joined by single spaces and the offsets point into it) or CoNLL (`token<TAB>tag`
in valid IOB2, blank line between documents; `token<TAB>gold<TAB>predicted`, the layout conlleval
reads, when the CoNLL input has IOB2 tags). Every input line of a text file is a document, empty
ones included, so output line N always belongs to input line N; a text file that looks like CoNLL
is refused instead.
"""

from __future__ import annotations

import argparse
import codecs
import io
import json
import sys
from contextlib import ExitStack
from itertools import chain, islice
from pathlib import Path
from typing import IO, BinaryIO, Iterable, Iterator, Sequence

import xdner_runtime
from xdner_runtime.command import positive_int
from xdner_runtime.tags import entities, is_valid_tag
from xdner_runtime.words import split_words

from .data.conll import LineProblem, format_conll, is_tab_separated, parse_conll
from .errors import XdnerError
from .io import atomic_path
from .log import progress

CHUNK = 1024  # documents per chunk: enough for full length-sorted batches, bounded memory
SNIFF = 20  # lines of a text input looked at for CoNLL

# One document: its text, its words' character spans in that text, and its gold tags if the input had them.
Document = tuple[str, list[tuple[int, int]], "list[str] | None"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`xdner predict`, handled by `run_predict`."""
    text = "tag raw text or CoNLL files with a distilled student"
    p = subparsers.add_parser("predict", help=text, description=text)
    p.add_argument("--model", type=Path, required=True, help="a student directory saved with its tokenizer (e.g. students/NAME/joint/model)")
    p.add_argument("input", help="a text file (one document per line), a CoNLL file, or - for stdin")
    p.add_argument("--input-format", choices=("text", "conll"), default="text", help="default: text")
    p.add_argument("--format", choices=("jsonl", "conll"), help="output format (default: jsonl for text input, conll for CoNLL input)")
    p.add_argument("--output", type=Path, help="output file, written atomically (default: stdout)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="model windows per forward pass")
    p.add_argument("--encoding", default="utf-8", help="the input's text encoding (default: utf-8, a BOM dropped)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--onnx", type=Path, help="run this graph from `xdner export` (e.g. DIR/model.int8.onnx) with onnxruntime instead of PyTorch")
    p.set_defaults(handler=run_predict)
    return p


def run_predict(args: argparse.Namespace) -> int:
    import torch  # with the tagger: only once the command runs

    from .tagger import Tagger

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
    U+2028 and friends, which may sit inside tokens (as in `decoded_lines`)."""
    lines = (line.rstrip("\r\n") for line in source)
    if input_format == "text":
        head = list(islice(lines, SNIFF))
        refuse_conll(head, name)
        for line in chain(head, lines):
            yield line, split_words(line), None
        return
    last_column: dict[int, str] = {}  # line number -> its last column, for the sentence being read

    def remember(numbered: Iterable[str]) -> Iterator[str]:
        for lineno, line in enumerate(numbered, start=1):
            if len(cols := columns(line)) > 1:
                last_column[lineno] = cols[-1]
            yield line

    for item in parse_conll(remember(lines), with_tags=False):
        if isinstance(item, LineProblem):
            raise item.error(Path(name))
        gold = [last_column.get(n, "") for n in item.lines]
        last_column.clear()
        text, spans, pos = [], [], 0
        for token in item.tokens:
            spans.append((pos, pos + len(token)))
            text.append(token)
            pos += len(token) + 1
        yield " ".join(text), spans, gold if all(map(is_valid_tag, gold)) else None


def columns(line: str) -> list[str]:
    """A line's columns as the CoNLL reader splits them."""
    return [c.strip(" ") for c in line.split("\t")] if is_tab_separated(line) else line.split()


def refuse_conll(head: Sequence[str], name: str) -> None:
    """A text input whose first lines are all `token ... IOB2-tag` columns is CoNLL passed as
    text: tagged line by line it would give one-word documents, silently."""
    rows = [line for line in head if line.strip()]
    if len(rows) >= 2 and all(1 < len(cols := columns(line)) <= 4 and is_valid_tag(cols[-1]) for line in rows):
        raise XdnerError(f"{name} looks like CoNLL (a token and an IOB2 tag per line, e.g. {rows[0]!r}), not text with one "
                         "document per line; pass --input-format conll to tag it as CoNLL")


def write_predictions(tagger: xdner_runtime.Tagger, docs: Iterable[Document], out_format: str, sink: IO[str]) -> None:
    docs = iter(docs)
    with progress(desc="predict", unit="doc") as bar:
        while chunk := list(islice(docs, CHUNK)):
            words = [[text[s:e] for s, e in spans] for text, spans, _ in chunk]
            predicted = tagger.predict(words)
            if out_format == "conll":
                sink.writelines(format_conll((w, tags if gold is None else [f"{g}\t{t}" for g, t in zip(gold, tags)])
                                             for w, (_, _, gold), (tags, _) in zip(words, chunk, predicted) if w))
            else:
                for (text, spans, _), (tags, scores) in zip(chunk, predicted):
                    record = {"text": text, "entities": entities(text, spans, tags, scores)}
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            bar.update(len(chunk))
