"""The README as a user reads it: every YAML block is a config the real loader accepts (set
names expanded as `xdner run` expands them) whose settings pass the up-front check, and every
`xdner` command it names has working `--help`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xtremedistil_ner.preflight import config_problems
from xtremedistil_ner.cli import build_parser, main, resolve_config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, flags=re.DOTALL)
COMMANDS = sorted(set(re.findall(r"\bxdner ([a-z]+)", README)))


def test_the_readme_has_config_examples_and_commands() -> None:
    assert len(YAML_BLOCKS) >= 2 and {"run", "demo", "validate", "predict", "export"} <= set(COMMANDS)


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[f"yaml-{i}" for i in range(len(YAML_BLOCKS))])
def test_every_yaml_block_loads_and_its_settings_pass_the_check(block: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("xtremedistil_ner.preflight.hub_reachable", lambda: True)  # as where the Hub is reachable
    path = tmp_path / "config.yaml"
    path.write_text(block, encoding="utf-8")
    cfg = resolve_config(build_parser().parse_args(["run", str(path), "--output-dir", str(tmp_path / "out")]))
    assert cfg.languages and all(2 <= len(code) <= 3 for code in cfg.languages)
    # The example's own data files do not exist here; every other setting must be valid.
    assert [p for p in config_problems(cfg) if not p.startswith(("data.files", "data.transfer_files"))] == []


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_the_readme_names_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and "usage: xdner" in capsys.readouterr().out
