"""Models of the package; this folder is what a model repository on the Hub carries."""

from .configuration_chcancerbert import ChCancerBertConfig
from .configuration_clinicalbert_kg import ClinicalBertKgConfig
from .crf import ConditionalRandomField
from .lexicon import TermLexicon
from .modeling_chcancerbert import ChCancerBertForCrfTagging
from .modeling_clinicalbert_kg import ClinicalBertKgForCrfTagging

__all__ = [
    "ChCancerBertConfig",
    "ChCancerBertForCrfTagging",
    "ClinicalBertKgConfig",
    "ClinicalBertKgForCrfTagging",
    "ConditionalRandomField",
    "TermLexicon",
]
