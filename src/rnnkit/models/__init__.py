"""Models for the lecture's topologies, each reading its input through one encoder contract.

* :class:`SequenceTagger`: many-to-many, same length (one label per step).
* :class:`SequenceClassifier`: many-to-one, with causal ("last") or non-causal pooling.
* :class:`SequenceRegressor`: real-valued many-to-one / many-to-many, multi-step forecasts.
* :class:`LanguageModel` with :func:`generate`: one-to-many self-regression until <eos>.
* :class:`Seq2Seq`: encoder-decoder with attention, greedy decoding and beam search.

Every model is built from a typed config dataclass, saves to a folder (JSON config,
safetensors weights) and loads back with :func:`load_model`; :func:`export_onnx` writes it
for deployment.
"""

from .attention import ATTENTIONS, Attention
from .base import MODEL_TYPES, Model, load_model, load_vocab
from .beam import Decoded, beam_search, greedy_search
from .classifier import ClassifierConfig, SequenceClassifier
from .config import config_from_dict, config_to_dict
from .encoder import (
    CELLS,
    RecurrentEncoder,
    RecurrentEncoderConfig,
    build_encoder,
    register_encoder,
)
from .generation import Generated, generate, sampling_probs
from .language_model import (
    LanguageModel,
    LanguageModelConfig,
    LanguageModelScore,
    batchify,
    windows,
)
from .pooling import POOLINGS, Pooling
from .regressor import RegressorConfig, SequenceRegressor
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .tagger import SequenceTagger, TaggerConfig

__all__ = [
    "ATTENTIONS",
    "Attention",
    "CELLS",
    "ClassifierConfig",
    "Decoded",
    "Generated",
    "LanguageModel",
    "LanguageModelConfig",
    "LanguageModelScore",
    "MODEL_TYPES",
    "Model",
    "POOLINGS",
    "Pooling",
    "RecurrentEncoder",
    "RecurrentEncoderConfig",
    "RegressorConfig",
    "Seq2Seq",
    "Seq2SeqConfig",
    "SequenceClassifier",
    "SequenceRegressor",
    "SequenceTagger",
    "TaggerConfig",
    "batchify",
    "beam_search",
    "build_encoder",
    "config_from_dict",
    "config_to_dict",
    "generate",
    "greedy_search",
    "load_model",
    "load_vocab",
    "register_encoder",
    "sampling_probs",
    "windows",
]
