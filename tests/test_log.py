"""`--quiet`/`--verbose`: what the package logs, and whether progress bars show."""

from __future__ import annotations

import logging

import pytest

from xtremedistil_ner import __version__, log
from xtremedistil_ner.cli import build_parser, main
from xtremedistil_ner.log import configure, progress


@pytest.fixture(autouse=True)
def back_to_normal():
    yield
    configure(0)


@pytest.mark.parametrize("flags, verbosity", [([], 0), (["-q"], -1), (["--quiet"], -1), (["-v"], 1), (["--verbose"], 1)])
def test_every_command_takes_the_verbosity_flags(flags: list[str], verbosity: int) -> None:
    for argv in (["run", "c.yaml"], ["distil", "--config", "c.yaml"], ["demo"], ["validate", "d"], ["predict", "--model", "m", "d"],
                 ["export", "--model", "m"]):
        assert build_parser().parse_args(argv + flags).verbosity == verbosity
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "c.yaml", "-q", "-v"])


def test_quiet_keeps_warnings_and_drops_progress(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("xtremedistil_ner.pipeline")
    configure(-1)
    log.info("step done")
    log.warning("something odd")
    assert capsys.readouterr().err == "something odd\n"
    assert progress(range(3)).disable
    configure(0)
    log.info("step done")
    log.debug("detail")
    assert capsys.readouterr().err == "step done\n"
    assert not progress(range(3)).disable and progress(range(3), main_process=False).disable
    configure(1)
    log.debug("detail")
    assert "DEBUG: detail" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"xdner {__version__}\n"


def test_off_a_terminal_a_bar_is_a_plain_line_every_few_seconds(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    """A redirected stderr (a log file, CI) gets no carriage returns or ANSI codes, and a bar
    that ends within `LINE_SECONDS` writes nothing at all."""
    list(progress(range(50), desc="quick"))
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(log, "LINE_SECONDS", 0)
    with progress(total=2, desc="slow", leave=True) as bar:
        bar.update(2)
    err = capsys.readouterr().err
    assert err.startswith("slow: ") and err.endswith("\n") and "\r" not in err and "\x1b" not in err


def test_the_libraries_report_and_draw_bars_only_when_verbose() -> None:
    """transformers' LOAD REPORT (a warning, with ANSI codes) and the Hub's and datasets' bars."""
    import datasets
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    configure(0)
    assert hf_logging.get_verbosity() == logging.ERROR and not hf_logging.is_progress_bar_enabled()
    assert are_progress_bars_disabled() and datasets.utils.are_progress_bars_disabled()
    configure(1)
    assert hf_logging.get_verbosity() == logging.INFO and hf_logging.is_progress_bar_enabled() and not are_progress_bars_disabled()


def test_help_and_data_validation_import_neither_torch_nor_transformers(tmp_path) -> None:
    """`xdner --help` and `xdner validate DATA` start fast: the heavy libraries load only for the
    commands that need them."""
    import subprocess
    import sys

    data = tmp_path / "train.txt"
    data.write_text("Anna B-PER\nlacht O\n\n", encoding="utf-8")
    code = ("import sys\nfrom xtremedistil_ner.cli import main\n"
            "for argv in (['--help'], ['run', '--help'], ['validate', sys.argv[1]]):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'accelerate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
