"""What made an artifact: the config slice and data fingerprints a step's result depends on,
recorded with the artifact, so a rerun with other settings never reuses (or reports) a model
that was not built from them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from .data.conll import Sentence
from .errors import StaleArtifactError

NOTHING: Any = object()  # the inputs recorded where no work was done yet


def sentences_fingerprint(sentences: Iterable[Sentence]) -> str:
    """sha256 over every sentence's language, tokens and tags, in order."""
    h = hashlib.sha256()
    for sent in sentences:
        h.update(json.dumps([sent.lang, sent.tokens, sent.tags], ensure_ascii=False).encode())
    return h.hexdigest()


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as `a.b.c: leaf`; a list of mappings (the stages) by position, `a.0.b`,
    so a key added to them later is unrecorded, not a change; other lists are leaves."""
    if isinstance(tree, list) and tree and all(isinstance(x, Mapping) for x in tree):
        tree = {str(i): x for i, x in enumerate(tree)}
    if isinstance(tree, Mapping):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def changed_keys(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """`key: recorded -> current` for every leaf that differs (all of them if nothing was recorded)."""
    old, new = flatten(recorded or {}), flatten(current)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return [f"{k}: {_short(old.get(k, 'unrecorded'))} -> {_short(new.get(k, 'absent'))}" for k in keys]


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:12] + "…"


def must_rebuild(artifact: Path, what: str, recorded: Mapping[str, Any] | None, current: Mapping[str, Any], overwrite: bool) -> bool:
    """Whether an existing artifact has to be built again: False when it was made from `current`
    (a key it did not record counts as unset, so a new setting left at None changes nothing);
    True when it was not and `overwrite` allows rebuilding; otherwise `check_inputs` refuses."""
    if not changed_keys(recorded, current):
        return False
    if not overwrite:
        check_inputs(artifact, what, recorded, current)
    return True


def check_inputs(artifact: Path, what: str, recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> None:
    """Raise `StaleArtifactError` naming the changed keys when `artifact` was built from other inputs."""
    changed = changed_keys(recorded, current)
    if changed:
        shown = "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise StaleArtifactError(
            f"{artifact}: the {what} there was built from other settings ({shown}); rerun with --overwrite to "
            "rebuild it and what depends on it, or choose another --output-dir")
