"""`xdner validate`: every problem in a file is reported at once, with file:line, and agrees
with what `read_conll` would stop at; YAMLs and folders are checked as a run would use them."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from xtremedistil_ner.data.conll import read_conll
from xtremedistil_ner.data.labels import DataError
from xtremedistil_ner.validate import (
    Problem,
    add_parser,
    format_problems,
    run_validate,
    validate_paths,
)

SHARED_NER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ner"
CLEAN = "Anna\tB-PER\nSchmidt\tI-PER\nlives\tO\nin\tO\nBerlin\tB-LOC\n\nHello\tO\n"
GOOD_LANGUAGE = "code: xx\nname: Test\nscript: Latin\nword_segmentation: whitespace\nsources:\n  wikiann:\n    hub: {path: wikiann, name: xx}\n"


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _found(problems: list[Problem]) -> list[tuple[int | None, str]]:
    return [(p.line, p.severity) for p in problems]


def _exit_status(paths: list[Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="xdner")
    add_parser(parser.add_subparsers(dest="command"))
    status = run_validate(parser.parse_args(["validate", *map(str, paths)]))
    return status, capsys.readouterr().out


def test_every_error_in_a_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "messy.txt", (
        "Anna\tB-PER\n"      # 1
        "lonely\n"           # 2 no tag column
        "\n"
        "x\tO\n"             # 4
        "Berlin\tI-LOC\n"    # 5 I- after O: repaired (warning)
        "\tO\n"              # 6 empty token
        "foo\tB_PER\n"       # 7 outside IOB2
        "\n"
        "bar\tPER\n"         # 9 outside IOB2
    ))
    problems = validate_paths([path])
    assert _found(problems) == [(2, "error"), (5, "warning"), (6, "error"), (7, "error"), (9, "error")]
    assert all(p.path == str(path) for p in problems)
    assert "no tag column" in problems[0].message and "'lonely'" in problems[0].message
    assert "'I-LOC'" in problems[1].message and "strict mode" in problems[1].message
    assert "empty token" in problems[2].message
    assert "'B_PER'" in problems[3].message and "'PER'" in problems[4].message
    # The validator and the reader agree: the reader stops at the validator's first error.
    with pytest.raises(DataError, match=re.escape(f"{path}:2: no tag column")):
        read_conll(path, "en")


def test_clean_file_has_no_problems_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "clean.txt", CLEAN + "\nParis\tB-LOC\n")  # includes one-token sentences
    assert validate_paths([path]) == []
    status, out = _exit_status([path], capsys)
    assert status == 0
    assert out.strip() == "0 errors, 0 warnings"


def test_warnings_alone_exit_0_and_errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    warned = _write(tmp_path / "warned.txt", "x\tO\nBerlin\tI-LOC\n")
    status, out = _exit_status([warned], capsys)
    assert status == 0
    assert out.splitlines() == [
        f"{warned}:2: warning: {validate_paths([warned])[0].message}",
        "0 errors, 1 warning in 1 file",
    ]
    bad = _write(tmp_path / "bad.txt", "x\tO\ny\n")
    status, out = _exit_status([warned, bad], capsys)
    assert status == 1
    assert out.splitlines()[-1] == "1 error, 1 warning in 2 files"


def test_not_utf8_reports_the_first_bad_line_and_stops(tmp_path: Path) -> None:
    path = _write(tmp_path / "latin1.txt", "a\tO\n\nCaf\xe9\tO\nno tag here\nx\tBAD\n".encode("latin-1"))
    [problem] = validate_paths([path])
    assert (problem.line, problem.severity) == (3, "error")
    assert "UTF-8" in problem.message and "iconv" in problem.message


@pytest.mark.parametrize("content", ["", "\n \n\t\n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = _write(tmp_path / "empty.txt", content)
    [problem] = validate_paths([path])
    assert (problem.path, problem.line, problem.severity) == (str(path), None, "error")
    assert "empty" in problem.message


def test_docstart_only_file(tmp_path: Path) -> None:
    [problem] = validate_paths([_write(tmp_path / "d.txt", "-DOCSTART- -X- -X- O\n\n")])
    assert problem.severity == "error" and "no sentences" in problem.message


def test_mixed_separators_name_the_first_minority_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "mixed.txt", "a\tO\nb\tO\n\nc O\nd\tB-PER\n\ne O\n")
    [problem] = validate_paths([path])
    assert (problem.line, problem.severity) == (4, "warning")
    assert "mixed column separators" in problem.message and "space" in problem.message
    # Wholly space-separated files (CoNLL-2003 style) are fine.
    assert validate_paths([_write(tmp_path / "spaces.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n")]) == []


def test_crlf_and_bom_are_warnings_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "win.txt", "\ufeffAnna\tB-PER\nSchmidt\tI-PER\r\n\r\nParis\tB-LOC\r\n")
    problems = validate_paths([path])
    assert _found(problems) == [(1, "warning"), (2, "warning")]
    assert "byte-order mark" in problems[0].message and "CRLF" in problems[1].message
    assert _exit_status([path], capsys)[0] == 0


def test_control_and_zero_width_characters_name_the_code_point(tmp_path: Path) -> None:
    path = _write(tmp_path / "odd.txt", "a\u200bb\tO\nx\x01y\tO\n\ufeffz\tO\nclean\tO\nc\u200bd\tO\nq\u200dr\tO\n")
    problems = validate_paths([path])
    assert _found(problems) == [(1, "warning"), (2, "warning"), (3, "warning"), (6, "warning")]
    zwsp, control, bom, zwj = (p.message for p in problems)
    assert zwsp.startswith("U+200B (ZERO WIDTH SPACE) in 2 tokens, first 'a\\u200bb' (also line 5)")
    assert control.startswith("U+0001 (control character)")
    assert bom.startswith("U+FEFF (ZERO WIDTH NO-BREAK SPACE)")
    assert zwj.startswith("U+200D (ZERO WIDTH JOINER)") and "Indic" in zwj
    assert all("remove them" in m for m in (zwsp, control, bom, zwj))


def test_sentences_over_1000_tokens_warn_that_they_are_windowed(tmp_path: Path) -> None:
    fine = "".join(f"w{i}\tO\n" for i in range(1000))
    long = "".join(f"w{i}\tO\n" for i in range(1001))
    path = _write(tmp_path / "long.txt", f"{fine}\n{long}")
    [problem] = validate_paths([path])
    assert (problem.line, problem.severity) == (1002, "warning")
    assert "1,001 tokens" in problem.message and "windows" in problem.message


def _language(root: Path, lang: str, train: str, dev: str = CLEAN, test: str = CLEAN) -> None:
    for split, text in (("train", train), ("dev", dev), ("test", test)):
        _write(root / lang / f"{split}.txt", text)


def test_label_in_test_missing_from_train(tmp_path: Path) -> None:
    _language(tmp_path, "de", train=CLEAN, test="x\tO\nEU\tB-ORG\nUN\tB-MISC\nPact\tI-MISC\n")
    [problem] = validate_paths([tmp_path / "de"])
    assert (problem.path, problem.line, problem.severity) == (str(tmp_path / "de" / "test.txt"), 2, "warning")
    assert "B-MISC, B-ORG, I-MISC never seen in" in problem.message and "LOC, PER" in problem.message


def test_directory_of_languages(tmp_path: Path) -> None:
    _language(tmp_path, "de", train=CLEAN)
    _language(tmp_path, "en", train=CLEAN + "\nEU\tB-ORG\n", test=CLEAN + "\nEU\tB-ORG\n")
    _language(tmp_path, "fr", train=CLEAN)
    _write(tmp_path / "sw" / "test.txt", CLEAN)
    (tmp_path / "notes").mkdir()  # a folder without splits is ignored
    problems = validate_paths([tmp_path])
    assert _found(problems) == [(None, "warning"), (None, "warning")]
    missing, types = problems
    assert missing.path == str(tmp_path / "sw") and "no train.txt, dev.txt" in missing.message
    assert types.path == str(tmp_path) and "ORG only in en" in types.message
    assert validate_paths([tmp_path / "de", tmp_path / "fr"]) == []


def test_folder_without_data_is_an_error(tmp_path: Path) -> None:
    [problem] = validate_paths([tmp_path])
    assert problem.severity == "error" and "train.txt" in problem.message
    [problem] = validate_paths([tmp_path / "nope.txt"])
    assert problem.severity == "error" and "no such file" in problem.message


def test_bad_language_yaml_names_the_file(tmp_path: Path) -> None:
    good = _write(tmp_path / "xx.yaml", GOOD_LANGUAGE)
    assert validate_paths([good]) == []
    bad = _write(tmp_path / "yy.yaml", GOOD_LANGUAGE.replace("code: xx", "code: yy").replace("name: Test\n", ""))
    [problem] = validate_paths([bad])
    assert (problem.path, problem.severity) == (str(bad), "error")
    assert "missing key(s) name" in problem.message


def test_language_set_yaml(tmp_path: Path) -> None:
    _write(tmp_path / "xx.yaml", GOOD_LANGUAGE)
    assert validate_paths([_write(tmp_path / "sets" / "ok.yaml", "name: ok\nlanguages: [xx]\n")]) == []
    [problem] = validate_paths([_write(tmp_path / "sets" / "bad.yaml", "name: bad\nlanguages: [xx, zz]\n")])
    assert problem.severity == "error" and "unknown language 'zz'" in problem.message


def test_run_config_with_unknown_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "run.yaml", "languages: [de]\nteacher:\n  epochs: 2\n  epoch: 3\n")
    [problem] = validate_paths([path])
    assert (problem.path, problem.severity) == (str(path), "error")
    assert "unknown key(s) ['epoch']" in problem.message


def test_run_config_validates_the_data_it_names(tmp_path: Path) -> None:
    _language(tmp_path / "data", "de", train=CLEAN + "oops\n")
    files = {split: str(tmp_path / "data" / "de" / f"{split}.txt") for split in ("train", "dev", "test")}
    config = "languages: [de, en]\ndata:\n  files:\n    de: {train: %(train)s, dev: %(dev)s, test: %(test)s}\n" % files
    path = _write(tmp_path / "run.yaml", config)
    problems = validate_paths([path])
    assert [(p.path, p.line, p.severity) for p in problems] == [
        (str(path), None, "error"),  # en: no files and no data.root
        (files["train"], 8, "error"),
    ]
    assert "data.root is not set" in problems[0].message


def test_format_problems() -> None:
    problems = [Problem("a.txt", 3, "bad tag", "error"), Problem("dir", None, "types differ", "warning")]
    assert format_problems(problems) == (
        "a.txt:3: error: bad tag\ndir: warning: types differ\n1 error, 1 warning in 2 files"
    )


@pytest.mark.skipif(not (SHARED_NER / "wikiann" / "de").is_dir(), reason=f"no WikiANN German data under {SHARED_NER}")
def test_real_wikiann_german_has_no_errors() -> None:
    problems = validate_paths([SHARED_NER / "wikiann" / "de"])
    assert [p for p in problems if p.severity == "error"] == []
