"""xtremedistil-ner: distil multilingual NER teachers into compact BiLSTM/transformer students."""

__version__ = "0.1.0"
