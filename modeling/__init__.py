"""Models of the package; this folder is what a model repository on the Hub carries."""

from .configuration_chcancerbert import ChCancerBertConfig
from .crf import ConditionalRandomField
from .modeling_chcancerbert import ChCancerBertForCrfTagging

__all__ = ["ChCancerBertConfig", "ChCancerBertForCrfTagging", "ConditionalRandomField"]
