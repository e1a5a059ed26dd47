"""Thread settings (issue #29, item 4): chosen before torch loads, from the cores this process
may use; the environment and the `threads` key override them; torch runs with what was chosen."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from xtremedistil_ner import threads

PROBE = """
import json, os, sys
from xtremedistil_ner.threads import configure_threads
n = configure_threads({arg})
import torch
from threadpoolctl import threadpool_info
print(json.dumps({{"n": n, "torch": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
                   "spin": os.environ.get("GOMP_SPINCOUNT"), "blas": [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]}}))
"""


def probe(arg: str = "None", **env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "XDNER_THREADS", *threads.BLAS_ENV)}
    out = subprocess.run([sys.executable, "-c", PROBE.format(arg=arg)], env={**base, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_defaults_follow_the_available_cores_and_shorten_the_spin() -> None:
    got = probe()
    assert got["n"] == got["torch"] == threads.default_threads()
    assert got["spin"] == threads.SPIN_COUNT


def test_environment_and_setting_override() -> None:
    assert probe(OMP_NUM_THREADS="1")["torch"] == 1
    assert probe(XDNER_THREADS="1")["torch"] == 1
    assert probe("1", OMP_NUM_THREADS="2")["torch"] == 1  # the config key wins over the environment
    assert probe(GOMP_SPINCOUNT="5")["spin"] == "5"
    assert probe(OMP_WAIT_POLICY="ACTIVE")["spin"] is None  # a chosen wait policy keeps libgomp's own spin


def test_numpys_blas_gets_one_thread_unless_the_user_chose() -> None:
    """numpy's OpenBLAS pool spinning beside torch's cost distillation 27% (cache decoding)."""
    assert set(probe()["blas"]) == {1}
    assert 1 not in set(probe(OPENBLAS_NUM_THREADS="2")["blas"])


def test_a_multi_process_launch_splits_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert threads.default_threads() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert threads.default_threads() == 1


def test_after_torch_only_an_explicit_count_changes_it() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert threads.configure_threads(None) == before
        assert threads.configure_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "two"])
def test_bad_thread_counts_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("XDNER_THREADS", value)
    with pytest.raises(ValueError, match="XDNER_THREADS|threads must be >= 1"):
        threads.configure_threads()
