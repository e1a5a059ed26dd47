"""xtremedistil-ner: distil multilingual NER teachers into compact BiLSTM/transformer students.

Importing the package registers the student model types with `transformers`' Auto classes, so
`AutoModelForTokenClassification.from_pretrained(DIR)` and `pipeline(model=DIR)` load a student
folder without `trust_remote_code`."""

__version__ = "0.1.0"

from . import students  # noqa: E402,F401  (registration is the import's side effect)
