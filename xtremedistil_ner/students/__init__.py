"""Student architectures; importing this registers every kind."""

from .base import REGISTRY, Student, pca_embeddings
from .bilstm import BiLSTMStudent

__all__ = ["REGISTRY", "Student", "BiLSTMStudent", "pca_embeddings"]
