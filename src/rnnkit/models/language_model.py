r"""Language model: embedding -> causal encoder -> output layer over the vocabulary.

The lecture's causal training: at every step the model reads y^<t-1> and predicts y^<t>, so
P(y^<1>, ..., y^<T>) = Π_t P(y^<t> | y^<1>, ..., y^<t-1>) (the chain rule slide), and the loss
is the mean of -log P(y^<t> | ...) over the predicted tokens.

Conditioning (the lecture's style-conditioned music generator): a label id (embedded) and/or a
latent vector z form a condition vector k (B, K). With ``condition="input"`` k is concatenated
to the token embedding at every step; with ``condition="state"`` it sets the initial state,
a^<0> = tanh(W_k k + b_k), and is not read again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Model
from .checks import batch_lengths, check_bool, check_choice, check_float, check_int, exporting
from .encoder import RecurrentEncoderConfig, State, build_encoder

CONDITIONS = ("input", "state")


@dataclass
class LanguageModelConfig:
    """Token ids -> next-token logits.

    ``tie_weights`` shares the embedding matrix with the output layer (Press & Wolf 2017; a
    projection H -> E is added when the encoder's output size differs from E).
    ``num_labels`` > 0 and/or ``latent_size`` > 0 make the model conditional.
    """

    vocab_size: int
    embedding_size: int = 32
    encoder: RecurrentEncoderConfig = field(
        default_factory=RecurrentEncoderConfig, metadata={"encoder": True}
    )
    tie_weights: bool = False
    dropout: float = 0.0
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3
    num_labels: int = 0
    label_size: int = 16
    latent_size: int = 0
    condition: str = "input"

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, low=1)
        check_int("embedding_size", self.embedding_size, low=1)
        check_bool("tie_weights", self.tie_weights)
        self.dropout = check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        for name in ("pad_id", "bos_id", "eos_id"):
            value = check_int(name, getattr(self, name))
            if value >= self.vocab_size:
                raise ValueError(f"{name} must be < vocab_size={self.vocab_size}, got {value}")
        check_int("num_labels", self.num_labels)
        check_int("label_size", self.label_size, low=1)
        check_int("latent_size", self.latent_size)
        check_choice("condition", self.condition, CONDITIONS)

    @property
    def condition_size(self) -> int:
        """K: width of the condition vector (0 for an unconditional model)."""
        return (self.label_size if self.num_labels else 0) + self.latent_size


@dataclass
class LanguageModelScore:
    """Mean negative log-likelihood per predicted token and what follows from it."""

    nll: float
    perplexity: float  # exp(nll)
    bits_per_token: float  # nll / ln 2
    num_tokens: int


class LanguageModel(Model):
    """Causal language model, stateful across calls (truncated BPTT, generation).

    Call ``logits, state = model(tokens, state=None, *, lengths=None, labels=None,
    latent=None)``: ``tokens`` (B, T) ids -> ``logits`` (B, T, V), the scores of the token
    following each position, and the encoder state after the last step (after each sequence's
    last valid step with ``lengths``). Passing ``state`` back continues the sequences exactly.
    """

    config_class = LanguageModelConfig

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__(config)
        V, E, K = config.vocab_size, config.embedding_size, config.condition_size
        self.embedding = nn.Embedding(V, E, padding_idx=config.pad_id)
        self.label_embedding = (
            nn.Embedding(config.num_labels, config.label_size) if config.num_labels else None
        )
        reads_condition = config.condition == "input" and K > 0
        self.encoder = build_encoder(config.encoder, E + K if reads_condition else E)
        if not getattr(self.encoder, "causal", False):
            raise ValueError(
                "a language model needs a causal encoder (output t may only read inputs up to "
                "t); got a non-causal one (bidirectional=True?)"
            )
        if not hasattr(self.encoder, "forward_with_state"):
            raise ValueError("a language model needs a stateful encoder (forward_with_state)")
        self.condition_to_state = (
            nn.Linear(K, self.encoder.flat_state_size)
            if config.condition == "state" and K > 0
            else None
        )
        H = self.encoder.output_size
        self.dropout = nn.Dropout(config.dropout)
        self.projection = nn.Linear(H, E, bias=False) if config.tie_weights and H != E else None
        self.output = nn.Linear(E if config.tie_weights else H, V)
        if config.tie_weights:
            self.output.weight = self.embedding.weight  # (V, E), one tensor

    # -- forward -----------------------------------------------------------------------------
    def forward(
        self,
        tokens: Tensor,
        state: State | None = None,
        *,
        lengths: Tensor | None = None,
        labels: Tensor | None = None,
        latent: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """(B, T) ids -> (logits (B, T, V), state)."""
        self._check_tokens("tokens", tokens)
        B = tokens.shape[0]
        lengths = batch_lengths(tokens, lengths)
        k = self.condition_vector(B, labels, latent)  # (B, K) or None
        e = self.dropout(self.embedding(tokens))  # (B, T, E)
        if k is not None and self.config.condition == "input":
            e = torch.cat([e, k.unsqueeze(1).expand(B, tokens.shape[1], k.shape[1])], dim=2)
        if k is not None and self.config.condition == "state" and state is None:
            state = self.encoder.state_from_vector(torch.tanh(self.condition_to_state(k)))
        h, state = self.encoder.forward_with_state(e, state, lengths)  # (B, T, H)
        h = self.dropout(h)
        if self.projection is not None:
            h = self.projection(h)  # (B, T, E)
        return self.output(h), state

    def condition_vector(
        self, batch_size: int, labels: Tensor | None, latent: Tensor | None
    ) -> Tensor | None:
        """k = [label embedding; z] (B, K), or None for an unconditional model."""
        cfg = self.config
        parts = []
        if cfg.num_labels:
            if not isinstance(labels, Tensor):
                raise ValueError(f"labels (B,) are required: the model has {cfg.num_labels}")
            if labels.shape != (batch_size,) or labels.dtype.is_floating_point:
                raise ValueError(
                    f"labels must be integer ids of shape ({batch_size},), got dtype "
                    f"{labels.dtype} and shape {tuple(labels.shape)}"
                )
            if int(labels.min()) < 0 or int(labels.max()) >= cfg.num_labels:
                raise ValueError(f"labels must lie in [0, {cfg.num_labels}), got {labels.tolist()}")
            parts.append(self.label_embedding(labels))  # type: ignore[misc]
        elif labels is not None:
            raise ValueError("labels were given but the model has num_labels=0")
        if cfg.latent_size:
            if not isinstance(latent, Tensor) or latent.shape != (batch_size, cfg.latent_size):
                got = tuple(latent.shape) if isinstance(latent, Tensor) else latent
                raise ValueError(
                    f"latent must be a tensor of shape ({batch_size}, {cfg.latent_size}), got {got}"
                )
            parts.append(latent.to(self.embedding.weight.dtype))
        elif latent is not None:
            raise ValueError("latent was given but the model has latent_size=0")
        return torch.cat(parts, dim=1) if parts else None

    def _check_tokens(self, name: str, tokens: object) -> None:
        if not isinstance(tokens, Tensor):
            raise TypeError(f"{name} must be a Tensor of token ids, got {type(tokens).__name__}")
        if tokens.dim() != 2 or tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise ValueError(
                f"{name} must be integer ids of shape (B, T), got dtype {tokens.dtype} and "
                f"shape {tuple(tokens.shape)}"
            )
        if (
            not exporting()
            and tokens.numel()
            and (int(tokens.min()) < 0 or int(tokens.max()) >= self.config.vocab_size)
        ):
            raise ValueError(
                f"{name} must lie in [0, vocab_size={self.config.vocab_size}), got values from "
                f"{int(tokens.min())} to {int(tokens.max())}"
            )

    # -- losses ------------------------------------------------------------------------------
    def nll(
        self,
        tokens: Tensor,
        lengths: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        latent: Tensor | None = None,
    ) -> tuple[Tensor, int]:
        """(Σ -log P(y^<t> | y^<<t>), number of predicted tokens) over whole sequences.

        ``tokens`` (B, T) holds each sequence from its first token (usually <bos>) to its last
        (usually <eos>); ``lengths`` (B,) counts them, each >= 2. Position t predicts t + 1.
        """
        self._check_tokens("tokens", tokens)
        if tokens.shape[1] < 2:
            raise ValueError(
                f"tokens must hold at least 2 steps to predict one, got {tokens.shape[1]}"
            )
        lengths = batch_lengths(tokens, lengths)
        if lengths is not None and int(lengths.min()) < 2:
            raise ValueError(
                f"lengths must be >= 2 (one input, one target), got {lengths.tolist()}"
            )
        n_in = None if lengths is None else lengths - 1
        logits, _ = self(tokens[:, :-1], lengths=n_in, labels=labels, latent=latent)
        targets = tokens[:, 1:]  # (B, T-1)
        losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T-1)
        if n_in is None:
            return losses.sum(), losses.numel()
        mask = torch.arange(targets.shape[1], device=tokens.device) < n_in.unsqueeze(1)
        return losses[mask].sum(), int(mask.sum())

    def loss(
        self,
        tokens: Tensor,
        lengths: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        latent: Tensor | None = None,
    ) -> Tensor:
        """Mean next-token cross-entropy over the predicted tokens of whole sequences."""
        total, count = self.nll(tokens, lengths, labels=labels, latent=latent)
        return total / count

    def stream_loss(
        self,
        inputs: Tensor,
        targets: Tensor,
        state: State | None = None,
        *,
        labels: Tensor | None = None,
        latent: Tensor | None = None,
        reduction: str = "mean",
    ) -> tuple[Tensor, State]:
        """One window of truncated BPTT over B parallel streams.

        ``inputs`` and ``targets`` (B, W), targets[:, t] the token after inputs[:, t]; ``state``
        the one returned for the previous window (None at the start). Returns the loss ("mean"
        or "sum" over the B·W predictions) and the final state *detached*: the state carries
        over to the next window, the gradient stops at the window's start.
        """
        check_choice("reduction", reduction, ("mean", "sum"))
        self._check_tokens("targets", targets)
        if targets.shape != inputs.shape:
            raise ValueError(
                f"targets must have the shape of inputs {tuple(inputs.shape)}, got "
                f"{tuple(targets.shape)}"
            )
        logits, state = self(inputs, state, labels=labels, latent=latent)
        loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction=reduction)
        return loss, self.encoder.detach_state(state)

    @torch.no_grad()
    def score(
        self,
        tokens: Tensor,
        lengths: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        latent: Tensor | None = None,
    ) -> LanguageModelScore:
        """Mean NLL, perplexity exp(NLL) and bits per token NLL / ln 2 over ``tokens``."""
        total, count = self.nll(tokens, lengths, labels=labels, latent=latent)
        nll = float(total) / count
        return LanguageModelScore(nll, math.exp(nll), nll / math.log(2.0), count)


def batchify(stream: Tensor, batch_size: int) -> Tensor:
    """Cut a 1-D token stream (N,) into B parallel streams (B, N // B), dropping the tail."""
    check_int("batch_size", batch_size, low=1)
    if not isinstance(stream, Tensor) or stream.dim() != 1:
        raise ValueError(f"stream must be a 1-D tensor of ids, got {stream!r:.60}")
    n = stream.shape[0] // batch_size
    if n < 2:
        raise ValueError(
            f"stream of {stream.shape[0]} tokens is too short for batch_size={batch_size}"
        )
    return stream[: n * batch_size].view(batch_size, n)


def windows(streams: Tensor, window: int) -> Iterator[tuple[Tensor, Tensor]]:
    """(inputs, targets) windows of width <= ``window`` over (B, N) streams, for
    :meth:`LanguageModel.stream_loss`; together they predict every token but the first."""
    check_int("window", window, low=1)
    for start in range(0, streams.shape[1] - 1, window):
        stop = min(start + window, streams.shape[1] - 1)
        yield streams[:, start:stop], streams[:, start + 1 : stop + 1]
