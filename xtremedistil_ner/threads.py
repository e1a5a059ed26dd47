"""CPU threads that are fast alone and fair when the cores are shared.

torch's CPU wheels run their kernels on GNU OpenMP, whose idle threads spin about 300,000 times
before sleeping. A BiLSTM step is thousands of small parallel regions, so two runs sharing two
cores spent most of their time spinning against each other (benchmarks/results/cpu-sharing).
A spin count of 1,000 (what libgomp itself picks when it knows it is oversubscribed) keeps the
speed of a run alone and gives each of two runs about half. libgomp reads its settings once, when
torch loads it, so `configure_threads` must run before torch is imported; `xdner` calls it first
thing. A `threads` setting wins over `OMP_NUM_THREADS`; otherwise variables already set in the
environment win.

numpy's own BLAS (OpenBLAS, a second thread pool) serves only small products between torch's
kernels, such as decoding cached hidden states; its threads spinning against torch's cost a
50/200 distillation 27% of its speed, so it gets one thread unless `OPENBLAS_NUM_THREADS` or
`MKL_NUM_THREADS` says otherwise.
"""

from __future__ import annotations

import os
import sys

from threadpoolctl import threadpool_limits
from xdner_runtime.onnx import available_cores

from .config import ConfigError

SPIN_COUNT = "1000"
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # a user's choice for numpy's BLAS threads
ENV_THREADS = "XDNER_THREADS"


def default_threads() -> int:
    """One share of the available cores per process of a multi-process launch on this node."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, available_cores() // max(1, local))


def configure_threads(threads: int | None = None) -> int:
    """Before torch loads: its thread count (`threads`, else `$XDNER_THREADS`, else
    `$OMP_NUM_THREADS`, else `default_threads()`) and libgomp's spin count. After: only an
    explicit `threads` changes torch's count; a program that imported torch itself keeps its
    own choice. Returns the thread count in force."""
    if threads is None and os.environ.get(ENV_THREADS):
        try:
            threads = int(os.environ[ENV_THREADS])
        except ValueError:
            raise ConfigError(f"{ENV_THREADS}={os.environ[ENV_THREADS]!r}: expected a whole number of threads") from None
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1 (got {threads})")
    if "torch" in sys.modules:
        import torch

        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return torch.get_num_threads()
    if threads is not None or not os.environ.get("OMP_NUM_THREADS"):
        os.environ["OMP_NUM_THREADS"] = str(threads or default_threads())
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    if not any(v in os.environ for v in BLAS_ENV):
        threadpool_limits(1, user_api="blas")  # numpy is loaded by now: its BLAS reads no variable any more
    return int(os.environ["OMP_NUM_THREADS"])
