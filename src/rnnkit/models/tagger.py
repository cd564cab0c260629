"""Many-to-many, same length: one label per step (the lecture's trigger-word detection,
ECG R-wave detection, part-of-speech tagging)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from .base import Model
from .checks import batch_lengths, check_float, check_input_kind, check_int
from .encoder import RecurrentEncoderConfig, build_encoder
from .heads import check_class_targets, class_losses, class_predictions, class_probabilities
from .inputs import InputLayer
from .pooling import valid_mask


@dataclass
class TaggerConfig:
    """Input (features or token ids) -> encoder -> per-step class logits.

    ``num_classes`` 1 means one sigmoid per step (binary, as the lecture's trigger word);
    C >= 2 a softmax over C classes per step.
    """

    num_classes: int
    input_size: int = 0
    vocab_size: int = 0
    embedding_size: int = 32
    pad_id: int = 0
    encoder: RecurrentEncoderConfig = field(
        default_factory=RecurrentEncoderConfig, metadata={"encoder": True}
    )
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_int("num_classes", self.num_classes, low=1)
        check_input_kind(self.input_size, self.vocab_size, self.embedding_size)
        check_int("pad_id", self.pad_id)
        self.dropout = check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)


class SequenceTagger(Model):
    """Per-step classifier: ŷ^<t> = g_y(W_ya a^<t> + b_y) at every step t.

    Call ``logits = model(x, lengths=None)``: ``x`` (B, T, I) features or (B, T) token ids ->
    ``logits`` (B, T, C). The loss is the lecture's ℓ = Σ_t ℓ^<t> over the valid steps,
    divided by their number (so it does not grow with T and ignores padding).
    """

    config_class = TaggerConfig

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__(config)
        self.inputs = InputLayer(
            config.input_size, config.vocab_size, config.embedding_size, config.pad_id
        )
        self.encoder = build_encoder(config.encoder, self.inputs.output_size)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, config.num_classes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, I) or (B, T) -> logits (B, T, C)."""
        h = self.encoder(self.inputs(x), batch_lengths(x, lengths))  # (B, T, H)
        return self.head(self.dropout(h))

    def loss(self, x: Tensor, y: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Mean per-step cross-entropy over the valid steps; ``y`` (B, T), padding ignored."""
        logits = self(x, lengths)  # (B, T, C)
        B, T, C = logits.shape
        mask = valid_mask(batch_lengths(x, lengths), B, T, logits.device)  # (B, T)
        # padded targets may hold anything (even invalid ids): only valid steps are read
        y = check_class_targets(y, (B, T), self.config.num_classes, mask)
        losses = class_losses(logits[mask], y[mask])  # (N_valid,)
        return losses.sum() / mask.sum()

    def predict_proba(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, C) softmax, or (B, T) sigmoid when binary; zero at padded steps."""
        logits = self(x, lengths)
        probs = class_probabilities(logits)
        mask = valid_mask(batch_lengths(x, lengths), *logits.shape[:2], logits.device)
        return probs * mask.view(*mask.shape, *([1] * (probs.dim() - 2))).to(probs.dtype)

    def predict(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T) predicted class ids (-1 at padded steps)."""
        logits = self(x, lengths)
        mask = valid_mask(batch_lengths(x, lengths), *logits.shape[:2], logits.device)
        return class_predictions(logits).masked_fill(~mask, -1)
