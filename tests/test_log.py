"""`--quiet`/`--verbose`: what the package logs, and whether progress bars show."""

from __future__ import annotations

import logging

import pytest

from xtremedistil_ner.cli import build_parser
from xtremedistil_ner.log import configure, progress


@pytest.fixture(autouse=True)
def back_to_normal():
    yield
    configure(0)


@pytest.mark.parametrize("flags, verbosity", [([], 0), (["-q"], -1), (["--quiet"], -1), (["-v"], 1), (["--verbose"], 1)])
def test_every_command_takes_the_verbosity_flags(flags: list[str], verbosity: int) -> None:
    for argv in (["run", "c.yaml"], ["distil", "--config", "c.yaml"], ["demo"]):
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
