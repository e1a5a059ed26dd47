"""Every student type through one contract (as AllenNLP's ModelTestCase): every parameter gets a
gradient, padding never changes a sequence's output, train -> save_pretrained -> load gives
identical logits through our loader, `AutoModelForTokenClassification`, `pipeline` and, without
this package, `trust_remote_code=True`. Then the BiLSTM's own pieces: the vocabulary map,
padded reversal and the PCA initialisation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification, pipeline

from xtremedistil_ner.config import ConfigError
from xtremedistil_ner.encoding import special_ids
from xtremedistil_ner.students import (
    REGISTRY,
    Neighbours,
    StudentType,
    load_student,
    pca_embeddings,
    save_student,
    specialise,
    specialised_vocabulary,
    LanguageCounts,
    piece_probabilities,
    piece_scripts,
)
from xtremedistil_ner.students.base import register
from xtremedistil_ner.students.vocabulary import SCRIPT_WEIGHT
from xtremedistil_ner.students.modeling_xtremedistil import reverse_padded

from conftest import tiny_student

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
KINDS = sorted(REGISTRY)


def make(kind: str, seed: int = 0):
    return tiny_student(LABELS, np.arange(10, 20), 0, 50, kind=kind, seed=seed)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[10, 11, 12, 13, 14], [15, 16, 17, 0, 0]])
    return ids, (ids != 0).long()


@pytest.mark.parametrize("kind", KINDS)
def test_every_parameter_gets_a_gradient(kind: str) -> None:
    s = make(kind).train()
    ids, mask = batch()
    out = s(ids, mask, output_projections=True)
    assert len(out.projections) == len(s.config.teacher_layers)
    loss = out.logits.pow(2).mean() + sum(p.pow(2).mean() for p in out.projections)
    loss.backward()
    for name, p in s.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert make(kind)(ids, mask).projections is None  # only computed when asked for


@pytest.mark.parametrize("kind", KINDS)
def test_padding_does_not_change_outputs(kind: str) -> None:
    s = make(kind).eval()
    ids, mask = batch()
    with torch.no_grad():
        full = s(ids, mask).logits[1, :3]
        alone = s(ids[1:, :3], mask[1:, :3]).logits[0]
    assert torch.allclose(full, alone, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_labels_give_the_token_classification_loss(kind: str) -> None:
    s = make(kind).eval()
    ids, mask = batch()
    labels = torch.tensor([[0, 1, 2, 0, 3], [3, 4, 0, -100, -100]])
    out = s(ids, mask, labels=labels)
    want = F.cross_entropy(out.logits.reshape(-1, len(LABELS)), labels.reshape(-1), ignore_index=-100)
    assert torch.equal(out.loss, want)


@pytest.mark.parametrize("kind", KINDS)
def test_train_save_load_gives_identical_logits(kind: str, tmp_path: Path) -> None:
    s = make(kind)
    ids, mask = batch()
    labels = torch.tensor([[0, 1, 2, 0, 3], [3, 4, 0, -100, -100]])
    opt = torch.optim.Adam(s.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        loss = s(ids, mask, labels=labels).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 2
    s.eval()
    save_student(s, tmp_path / "student")
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left behind
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["model_type"] == f"xtremedistil-{kind}" and config["id2label"]["3"] == "B-PER"
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForTokenClassification"}
    with torch.no_grad():
        want = s(ids, mask).logits
        ours = load_student(tmp_path / "student")
        auto = AutoModelForTokenClassification.from_pretrained(tmp_path / "student")
        assert type(ours) is type(s) is type(auto)
        assert ours.labels == LABELS
        assert torch.equal(ours(ids, mask).logits, want) and torch.equal(auto(ids, mask).logits, want)


REMOTE = """
import sys
sys.modules["xtremedistil_ner"] = None  # as on a machine without this package
import torch
from transformers import AutoModelForTokenClassification
path, ids, mask = sys.argv[1], torch.tensor({ids}), torch.tensor({mask})
try:
    AutoModelForTokenClassification.from_pretrained(path)
    print("loaded without trust_remote_code")
except ValueError as exc:
    print("refused:", "trust_remote_code" in str(exc))
model = AutoModelForTokenClassification.from_pretrained(path, trust_remote_code=True).eval()
with torch.no_grad():
    print(type(model).__module__.startswith("transformers_modules"), model(ids, mask).logits.tolist())
"""


@pytest.mark.parametrize("kind", KINDS)
def test_folder_loads_with_trust_remote_code_where_the_package_is_absent(kind: str, tmp_path: Path) -> None:
    s = make(kind, seed=3).eval()
    save_student(s, tmp_path / "student")
    ids, mask = batch()
    script = REMOTE.format(ids=ids.tolist(), mask=mask.tolist())
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "student")], capture_output=True, text=True, cwd=tmp_path,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    refused, loaded = proc.stdout.strip().splitlines()[-2:]
    assert refused.endswith("refused: True")  # after transformers' prompt, answered by the closed stdin
    remote, logits = loaded.split(" ", 1)
    assert remote == "True"
    with torch.no_grad():
        assert torch.allclose(torch.tensor(json.loads(logits)), s(ids, mask).logits, atol=1e-6)


def biased(kind: str, tokenizer, winner: str):
    """A student over every id of `tokenizer` whose classifier always picks `winner`."""
    vocab, pad = len(tokenizer), special_ids(tokenizer)[2]
    s = tiny_student(LABELS, [i for i in range(vocab) if i != pad], pad, vocab, kind=kind)
    with torch.no_grad():
        s.classifier.weight.zero_()
        s.classifier.bias.copy_(torch.tensor([10.0 if t == winner else 0.0 for t in LABELS]))
    return s.eval()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strategy", ["first", "simple"])
def test_pipeline_tags_raw_text_from_the_folder(kind: str, strategy: str, tmp_path: Path, tiny_tokenizer) -> None:
    save_student(biased(kind, tiny_tokenizer, "B-PER"), tmp_path / "m", tiny_tokenizer)
    tagger = pipeline("token-classification", model=str(tmp_path / "m"), aggregation_strategy=strategy)
    text = "Anna Schmidt visited Berlin"
    ents = tagger(text)
    assert [e["entity_group"] for e in ents] == ["PER"] * len(ents) and ents
    for e in ents:
        assert text[e["start"]:e["end"]] == e["word"].replace(" ", "") or e["start"] < e["end"]
    if strategy == "first":  # one entity per word: B-PER on every first piece
        assert [text[e["start"]:e["end"]] for e in ents] == text.split()


@pytest.mark.parametrize("kind", KINDS)
def test_pipeline_stride_tags_texts_longer_than_the_windows(kind: str, tmp_path: Path, tiny_tokenizer) -> None:
    save_student(biased(kind, tiny_tokenizer, "B-PER"), tmp_path / "m", tiny_tokenizer)  # max_length 16
    tagger = pipeline("token-classification", model=str(tmp_path / "m"), aggregation_strategy="first", stride=4)
    assert tagger.tokenizer.model_max_length == 16 and tiny_tokenizer.model_max_length != 16  # the caller's is left as it was
    words = ("Anna lives in Berlin and works for Siemens " * 6).split()
    text = " ".join(words)
    ents = tagger(text)
    assert [text[e["start"]:e["end"]] for e in ents] == words  # every word of a 48-word text, none lost or doubled


def test_a_second_type_under_a_taken_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register("bilstm")(type("Other", (StudentType,), {}))
    assert REGISTRY["bilstm"].__name__ == "BiLSTMType"


def test_load_rejects_a_folder_that_is_no_student(tmp_path: Path, tiny_teacher: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a student folder"):
        load_student(tmp_path)
    with pytest.raises(ValueError, match="not an xtremedistil student"):
        load_student(tiny_teacher)


def test_vocabulary_maps_teacher_ids_to_compact_ids() -> None:
    s = make("bilstm")
    assert s.id_map[0].item() == 0  # pad
    assert s.id_map[10].item() == 2 and s.id_map[19].item() == 11
    assert s.id_map[42].item() == 1  # never seen -> unk


def test_reverse_padded_reverses_only_real_steps() -> None:
    x = torch.arange(10.0).reshape(2, 5, 1)
    out = reverse_padded(x, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[1, :, 0].tolist() == [7, 6, 5, 8, 9]


def test_pca_embeddings_keep_principal_directions() -> None:
    gen = torch.Generator().manual_seed(0)
    basis = torch.randn(2, 16, generator=gen)
    teacher = torch.randn(100, 2, generator=gen) @ basis * 5 + 0.01 * torch.randn(100, 16, generator=gen)
    kept = np.arange(20, 80)
    emb = pca_embeddings(teacher, kept, dim=4)
    assert emb.shape == (len(kept) + 2, 4)
    assert torch.all(emb[0] == 0)
    # two real directions carry nearly all variance; the others are near zero
    var = emb[2:].var(0)
    assert var[:2].min() > 50 * var[2:].max()
    # wider than the teacher: extra columns are small random values, not NaN
    wide = pca_embeddings(teacher, kept, dim=20)
    assert wide.shape == (62, 20) and torch.isfinite(wide).all()


@pytest.mark.parametrize("transformers_first", [True, False])
def test_importing_the_package_registers_the_types_whenever_transformers_comes(transformers_first: bool, tmp_path: Path) -> None:
    """`import xtremedistil_ner` before or after transformers: either way the Auto classes know
    the students (before, the registration waits until transformers is imported)."""
    save_student(make("bilstm"), tmp_path / "s")
    imports = ["import transformers", "import xtremedistil_ner"]
    code = "\n".join([*(imports if transformers_first else imports[::-1]), "import sys",
                      "from transformers import AutoModelForTokenClassification",
                      f"m = AutoModelForTokenClassification.from_pretrained({str(tmp_path / 's')!r})",
                      "print(type(m).__name__)"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "BiLSTMForTokenClassification"


@pytest.mark.parametrize("kind", KINDS)
def test_a_specialised_student_keeps_its_pieces_and_maps_the_rest_to_the_nearest(kind: str) -> None:
    """Trimmed to some of its pieces, a student gives the same logits on them with fewer
    parameters; a piece it knew but dropped reads the row of the kept piece closest to it in
    the teacher's embedding space; a piece it never knew stays unknown."""
    source = make(kind)
    teacher_emb = torch.randn(50, 10, generator=torch.Generator().manual_seed(0))
    teacher_emb[16] = teacher_emb[12] * 3 + 0.01  # 16 points where 12 does
    kept = np.array([10, 11, 12, 13, 14])
    small = specialise(source, kept, 0, teacher_emb)
    assert small.num_parameters() == source.num_parameters() - 5 * small.get_input_embeddings().weight.shape[1]
    ids = torch.tensor([[10, 11, 12, 13, 14], [14, 13, 12, 0, 0]])
    with torch.no_grad():
        assert torch.allclose(small(ids, (ids != 0).long()).logits, source(ids, (ids != 0).long()).logits, atol=1e-6)
    assert small.id_map[16].item() == small.id_map[12].item() == 4
    assert all(small.id_map[i].item() >= 2 for i in range(15, 20))  # every dropped piece has a row
    assert small.id_map[42].item() == 1 and small.id_map[0].item() == 0
    with pytest.raises(ValueError, match="unknown to the source student"):
        specialise(source, np.array([10, 42]), 0, teacher_emb)


def _language_counts(own: dict[int, int], other: dict[int, int], scripts: dict[int, str] | None = None,
                     probabilities: dict[int, float] | None = None) -> LanguageCounts:
    """Counts of the language `xx` and of one other, `yy`, over 50 teacher ids."""
    counts = {"xx": np.zeros(50, dtype=np.int64), "yy": np.zeros(50, dtype=np.int64)}
    for lang, given in (("xx", own), ("yy", other)):
        counts[lang][list(given)] = list(given.values())
    script = np.array([""] * 50, dtype=object)
    prob = np.ones(50)
    for i, name in (scripts or {}).items():
        script[i] = name
    for i, value in (probabilities or {}).items():
        prob[i] = value
    return LanguageCounts(counts, script.astype(str), prob)


def _room(source, rows: int) -> float:
    """The share that leaves room for pad, unknown and `rows` pieces."""
    width = source.get_input_embeddings().weight.shape[1]
    fixed = source.num_parameters() - source.get_input_embeddings().weight.numel()
    return (fixed + (2 + rows) * width) / source.num_parameters()


def test_a_specialised_vocabulary_keeps_its_own_pieces_first_within_its_parameter_share() -> None:
    """Its language's pieces come first, most frequent in its own text first, exactly as many as
    keep its parameters within the share: a share too small for all of them drops its rarest."""
    source = make("bilstm")  # teacher ids 10..19 have rows of their own
    counts = _language_counts({10: 1, 11: 5, 12: 3}, {13: 9, 14: 7, 15: 2, 16: 8, 17: 4, 18: 6, 19: 1})
    kept = specialised_vocabulary(source, "xx", counts, _room(source, 5))
    assert kept.tolist()[:3] == [10, 11, 12] and len(kept) == 5
    assert specialise(source, kept, 0, torch.randn(50, 10)).num_parameters() == round(_room(source, 5) * source.num_parameters())
    assert specialised_vocabulary(source, "xx", counts, _room(source, 2)).tolist() == [11, 12]  # its own two most frequent
    with pytest.raises(ConfigError, match="keep_share 0.1 leaves no room for embedding rows"):
        specialised_vocabulary(source, "xx", counts, 0.1)


def test_a_specialised_vocabulary_keeps_the_rows_its_language_is_likeliest_to_read() -> None:
    """The room left after its own pieces goes to the rows its language likely reads: a row that
    unseen pieces of the language's script read (by the tokenizer's probabilities) beats a piece
    another language uses more; among the rest, the other language's frequent pieces first."""
    source = make("bilstm")
    source.id_map[[30, 31]] = int(source.id_map[17])  # unseen pieces of xx's script read 17's row (their nearest)
    source.id_map[32] = int(source.id_map[16])  # an unseen piece of another script reads 16's row
    scripts = {10: "MYANMAR", 11: "MYANMAR", 30: "MYANMAR", 31: "MYANMAR", 32: "LATIN"}
    # yy shares a piece with xx, so its frequencies count; 32's script is not xx's, so 16 gains nothing from it
    counts = _language_counts({10: 4, 11: 2}, {10: 3, 12: 1, 13: 9, 14: 7, 15: 2, 16: 6, 17: 1}, scripts, {30: 0.5, 31: 0.5, 32: 0.9})
    assert specialised_vocabulary(source, "xx", counts, _room(source, 4)).tolist() == [10, 11, 13, 17]
    assert specialised_vocabulary(source, "xx", counts, _room(source, 5)).tolist() == [10, 11, 13, 14, 17]


def test_the_closest_language_speaks_for_the_language_over_many_that_share_a_little() -> None:
    """Piece 12 of the language closest to xx outranks piece 13, which four farther languages use
    far more: summed over them as they are, their overlaps would outweigh the close one's."""
    counts = {lang: np.zeros(50, dtype=np.int64) for lang in ("xx", "yy", "z1", "z2", "z3", "z4")}
    counts["xx"][[10, 11]] = 4
    counts["yy"][[10, 11, 12]] = [4, 4, 2]  # overlap with xx 0.89
    for far in ("z1", "z2", "z3", "z4"):
        counts[far][[10, 11, 13]] = [1, 1, 8]  # overlap with xx 0.45 each
    chance = LanguageCounts(counts, np.array([""] * 50), np.ones(50)).chance("xx")
    assert chance[12] > 10 * chance[13] > 0


def test_the_tokenizers_prior_for_a_script_counts_as_much_as_the_runs_text_in_it_is_the_languages() -> None:
    """An unseen piece of a script only the language writes gets the script's full prior; where
    another language writes half the run's text in that script, half (its text says the rest)."""
    scripts, probs = {10: "MYANMAR", 30: "MYANMAR"}, {10: 1.0, 30: 1.0}
    alone = _language_counts({10: 2}, {11: 2}, scripts, probs).chance("xx")[30]
    shared = _language_counts({10: 2}, {10: 2}, scripts, probs).chance("xx")[30]
    assert alone == pytest.approx(0.5 * SCRIPT_WEIGHT) and shared == pytest.approx(0.25 * SCRIPT_WEIGHT)


def test_pieces_have_scripts_and_the_tokenizers_own_probabilities() -> None:
    """A sentencepiece unigram tokenizer (XLM-R's kind) gives each piece its probability; a
    piece's script is its first letter's; special tokens and ids past the tokenizer's vocabulary have none."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    unigram = Tokenizer(models.Unigram([("<unk>", 0.0), ("\u2581hello", -1.0), ("\u1019\u1031\u1038", -2.0), ("12", -3.0)], 0))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=unigram, unk_token="<unk>")
    assert piece_scripts(tokenizer, 6).tolist() == ["", "LATIN", "MYANMAR", "", "", ""]
    np.testing.assert_allclose(piece_probabilities(tokenizer, 6), [1.0, np.exp(-1), np.exp(-2), np.exp(-3), 1.0, 1.0])


def test_a_wordpiece_tokenizer_gives_every_piece_the_same_probability(tiny_tokenizer) -> None:
    assert (piece_probabilities(tiny_tokenizer, 40) == 1.0).all()


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_a_random_init_student_owes_the_teacher_nothing(kind: str, tiny_teacher: Path) -> None:
    """`init: random` (the gold-only baseline) builds the same weights from two different teachers
    of one shape, while the default init takes something of each teacher (#26: a transformer's
    random init once took its word embeddings from a PCA of the teacher's)."""
    from xtremedistil_ner.config import StudentConfig

    from conftest import TINY_SIZES

    teachers = [AutoModelForTokenClassification.from_pretrained(tiny_teacher, num_labels=3, ignore_mismatched_sizes=True) for _ in range(2)]
    with torch.no_grad():
        for p in teachers[1].parameters():
            p.add_(torch.randn_like(p))
    kept = np.arange(10, 60)
    sizes = {k: v for k, v in TINY_SIZES[kind].items() if k != "teacher_layers"}
    base = {"labels": ["O", "B-PER", "I-PER"], "vocab_size": len(kept) + 2, "teacher_vocab_size": teachers[0].config.vocab_size,
            "teacher_hidden_size": teachers[0].config.hidden_size, "max_length": 16, "teacher_layers": [1, 2][: sizes.get("num_layers", 1)]}

    def weights(init: str, teacher) -> dict[str, torch.Tensor]:
        spec = StudentConfig("s", kind, init=init, **sizes)
        return REGISTRY[kind].from_teacher(spec, teacher, base, kept, 0, seed=0).state_dict()

    def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    assert same(weights("random", teachers[0]), weights("random", teachers[1]))
    assert not same(weights("auto", teachers[0]), weights("auto", teachers[1]))


@pytest.mark.parametrize("k", [1, 3, 200])
def test_neighbour_lists_give_the_full_searchs_nearest_pieces(k: int) -> None:
    """Taggers specialised with neighbour lists searched once (`Neighbours`) map every dropped id
    to the row a full search gives, also where an id's `k` neighbours are all dropped (k=1, 3)."""
    gen = torch.Generator().manual_seed(1)
    source = tiny_student(LABELS, np.arange(3, 300), 0, 400)
    source.id_map[300:390] = source.id_map[torch.randint(3, 300, (90,), generator=gen)]  # ids read via others' rows
    teacher_emb = torch.randn(400, 12, generator=gen)
    teacher_emb[7] = teacher_emb[250]  # a duplicate row: ties go to the lower id either way
    known = torch.nonzero(source.id_map >= 2).squeeze(1)
    neighbours = Neighbours(known, torch.arange(3, 300), teacher_emb, k=k)
    for seed in range(3):
        kept = np.sort(np.random.default_rng(seed).choice(np.arange(3, 300), 60, replace=False))
        full = specialise(source, kept, 0, teacher_emb)
        listed = specialise(source, kept, 0, teacher_emb, neighbours)
        assert torch.equal(full.id_map, listed.id_map)
        assert (listed.id_map[known] >= 2).all()
