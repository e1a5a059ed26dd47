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
    max_wait_ms: float = 5.0
