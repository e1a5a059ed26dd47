"""What one request to `xdner serve` may ask for, and how its batches form: apart from the
server, so the command line can show the defaults without importing the web stack."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how batches form. `max_words` counts whitespace-separated
    words (`str.split()`), a cheap proxy for the model windows a text costs."""

    max_body_bytes: int = 1 << 20
    max_texts: int = 256
    max_words: int = 10_000
    max_batch: int = 64
    # 0: a batch is what queued while the previous one ran. Measured with the wikiann6 50/200 int8
    # at 1/8/64 clients, 0 ms beat 2 and 5 ms at every level (774/451/717 texts/s against 98/357/563
    # at 5 ms, on a shared machine); a wait only pays where the model's cost per call dominates.
    max_wait_ms: float = 0.0
