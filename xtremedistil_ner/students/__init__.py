"""Student architectures; importing this registers every kind."""

from .base import REGISTRY, Student, pca_embeddings
from .bilstm import BiLSTMStudent
from .transformer import TransformerStudent

__all__ = ["REGISTRY", "Student", "BiLSTMStudent", "TransformerStudent", "pca_embeddings"]
