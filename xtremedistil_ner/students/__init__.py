"""Student types. Importing this registers them by name for distillation configs and with
`transformers`' Auto classes, so `AutoModelForTokenClassification.from_pretrained(DIR)` and
`pipeline("token-classification", model=DIR)` load a student folder with our code; each folder
also carries that code for `trust_remote_code=True` where this package is not installed."""

from transformers import AutoConfig, AutoModelForTokenClassification

from .base import (
    CARD,
    REGISTRY,
    StudentType,
    Neighbours,
    load_student,
    map_to_nearest,
    pca_embeddings,
    save_student,
    specialise,
    student_type,
)
from .bilstm import BiLSTMType
from .configuration_xtremedistil import (
    BiLSTMStudentConfig,
    TransformerStudentConfig,
    XtremeDistilConfig,
)
from .modeling_xtremedistil import (
    BiLSTMForTokenClassification,
    StudentOutput,
    TransformerForTokenClassification,
    XtremeDistilPreTrainedModel,
)
from .transformer import TransformerType
from .vocabulary import LanguageCounts, piece_probabilities, piece_scripts, specialised_vocabulary, vocabulary_ranking

for _type in REGISTRY.values():
    AutoConfig.register(_type.config_class.model_type, _type.config_class, exist_ok=True)
    AutoModelForTokenClassification.register(_type.config_class, _type.model_class, exist_ok=True)
    _type.config_class.register_for_auto_class()
    _type.model_class.register_for_auto_class("AutoModelForTokenClassification")

__all__ = [
    "CARD", "REGISTRY", "StudentType", "BiLSTMType", "TransformerType", "student_type", "load_student", "save_student",
    "pca_embeddings", "specialise", "specialised_vocabulary", "vocabulary_ranking", "LanguageCounts", "piece_scripts", "piece_probabilities", "map_to_nearest", "Neighbours", "XtremeDistilConfig", "BiLSTMStudentConfig", "TransformerStudentConfig",
    "XtremeDistilPreTrainedModel", "BiLSTMForTokenClassification", "TransformerForTokenClassification", "StudentOutput",
]
