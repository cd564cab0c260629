"""Many-to-one: one label per sequence (the lecture's video grading, sentiment, digits)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from .base import Model
from .checks import batch_lengths, check_float, check_input_kind, check_int
from .encoder import RecurrentEncoderConfig, build_encoder
from .heads import check_class_targets, class_losses, class_predictions, class_probabilities
from .inputs import InputLayer
from .pooling import POOLINGS, Pooling


@dataclass
class ClassifierConfig:
    """Input (features or token ids) -> encoder -> pooling over time -> class logits.

    ``num_classes`` 1 means binary (sigmoid), C >= 2 a softmax over C classes. ``pooling`` is
    "last" (causal), "mean", "max" or "attention" (:mod:`rnnkit.models.pooling`).
    """

    num_classes: int
    input_size: int = 0
    vocab_size: int = 0
    embedding_size: int = 32
    pad_id: int = 0
    encoder: RecurrentEncoderConfig = field(
        default_factory=RecurrentEncoderConfig, metadata={"encoder": True}
    )
    pooling: str = "last"
    attention_size: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_int("num_classes", self.num_classes, low=1)
        check_input_kind(self.input_size, self.vocab_size, self.embedding_size)
        check_int("pad_id", self.pad_id)
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"pooling must be one of {', '.join(map(repr, POOLINGS))}; got {self.pooling!r}"
            )
        check_int("attention_size", self.attention_size, low=1)
        self.dropout = check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)


class SequenceClassifier(Model):
    """Many-to-one classifier.

    Call ``logits = model(x, lengths=None)``: ``x`` (B, T, I) features or (B, T) token ids,
    ``lengths`` (B,) -> ``logits`` (B, C). Only the valid steps of each sequence matter.
    """

    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__(config)
        self.inputs = InputLayer(
            config.input_size, config.vocab_size, config.embedding_size, config.pad_id
        )
        self.encoder = build_encoder(config.encoder, self.inputs.output_size)
        self.pooling = Pooling(config.pooling, self.encoder.output_size, config.attention_size)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, config.num_classes)

    def pooled(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(pooled encoder outputs (B, H), attention weights (B, T) or None)."""
        e = self.inputs(x)  # (B, T, I or E)
        lengths = batch_lengths(x, lengths)
        h = self.encoder(e, lengths)  # (B, T, H)
        return self.pooling.pool(h, lengths)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, I) or (B, T) -> logits (B, C)."""
        return self.head(self.dropout(self.pooled(x, lengths)[0]))

    def loss(self, x: Tensor, y: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Mean cross-entropy over the batch; ``y`` (B,) class ids (0/1 floats when binary)."""
        logits = self(x, lengths)
        y = check_class_targets(y, (logits.shape[0],), self.config.num_classes)
        return class_losses(logits, y).mean()

    def predict_proba(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, C) softmax probabilities, or (B,) P(y = 1) when binary."""
        return class_probabilities(self(x, lengths))

    def predict(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B,) predicted class ids."""
        return class_predictions(self(x, lengths))

    def attention_weights(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T) attention over time of ``pooling="attention"``, zero at padding."""
        if self.config.pooling != "attention":
            raise ValueError(
                f"attention_weights needs pooling='attention', got {self.config.pooling!r}"
            )
        return self.pooled(x, lengths)[1]  # type: ignore[return-value]
