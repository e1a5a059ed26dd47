"""xtremedistil-ner: distil multilingual NER teachers into compact BiLSTM/transformer students.

Importing the package registers the student model types with `transformers`' Auto classes, so
`AutoModelForTokenClassification.from_pretrained(DIR)` and `pipeline(model=DIR)` load a student
folder without `trust_remote_code`. The registration needs torch and transformers (seconds to
import), so when transformers is not imported yet it happens right after it is: `xdner --help`
and `xdner validate` never pay for either."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any

__version__ = "0.1.0"


def _register() -> None:
    from . import students  # noqa: F401  (registration is the import's side effect)


class _AfterTransformers(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs `_register` once `transformers` itself has been imported, then steps aside."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _register()


if "transformers" in sys.modules:
    _register()
else:
    sys.meta_path.insert(0, _AfterTransformers())
