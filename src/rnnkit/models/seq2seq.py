r"""Encoder-decoder for variable-length input and output: the lecture's many-to-many with
different lengths (machine translation; captioning, with feature frames as the source).

Encoder: any encoder (:mod:`rnnkit.models.encoder`) over the source, giving h_1..h_S
(B, S, H_enc). The decoder's initial state is s_0 = tanh(W_b mean_{j≤n} h_j + b_b), split over
the decoder cell's state tensors. Each decoder step reads the previous target token y_{t-1}
(embedded, e_t) and, per ``attention``:

* ``"none"``: s_t = cell(e_t, s_{t-1}); o_t = s_t.
* ``"additive"`` (Bahdanau et al. 2015, the query is the previous state):
  c_t = attend(s_{t-1}); s_t = cell([e_t; c_t], s_{t-1}); o_t = tanh(W_c [s_t; c_t]).
* ``"multiplicative"`` (Luong et al. 2015, the query is the new state, with input feeding):
  s_t = cell([e_t; o_{t-1}], s_{t-1}); c_t = attend(s_t); o_t = tanh(W_c [s_t; c_t]).

and P(y_t | y_<t, x) = softmax(W_o o_t + b_o). For an LSTM cell, "state" above is its output h.

Targets hold ``[<bos>, y_1, ..., y_n, <eos>]`` padded, with lengths counting <bos> and <eos>.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .attention import ATTENTIONS, Attention
from .base import Model, eval_mode
from .beam import Decoded, StepFn, beam_search, greedy_search
from .checks import batch_lengths, check_choice, check_float, check_input_kind, check_int
from .encoder import CELLS, RecurrentEncoderConfig, build_encoder, make_cell
from .inputs import InputLayer
from .pooling import valid_mask

DecoderState = tuple[Tensor, ...]


@dataclass
class Seq2SeqConfig:
    """Source (token ids or features) -> encoder -> attentive decoder -> target tokens."""

    tgt_vocab_size: int
    src_vocab_size: int = 0
    src_input_size: int = 0
    embedding_size: int = 32
    encoder: RecurrentEncoderConfig = field(
        default_factory=RecurrentEncoderConfig, metadata={"encoder": True}
    )
    decoder_cell: str = "gru"
    decoder_hidden_size: int = 64
    attention: str = "additive"
    attention_size: int = 64
    dropout: float = 0.0
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self) -> None:
        check_int("tgt_vocab_size", self.tgt_vocab_size, low=1)
        check_input_kind(self.src_input_size, self.src_vocab_size, self.embedding_size)
        check_choice("decoder_cell", self.decoder_cell, tuple(CELLS))
        check_int("decoder_hidden_size", self.decoder_hidden_size, low=1)
        check_choice("attention", self.attention, ATTENTIONS)
        check_int("attention_size", self.attention_size, low=1)
        self.dropout = check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        for name in ("pad_id", "bos_id", "eos_id"):
            value = check_int(name, getattr(self, name))
            if value >= self.tgt_vocab_size:
                raise ValueError(
                    f"{name} must be < tgt_vocab_size={self.tgt_vocab_size}, got {value}"
                )


@dataclass
class Memory:
    """What the decoder attends to: encoder outputs (N, S, H_enc), their keys, valid mask."""

    values: Tensor
    keys: Tensor | None
    mask: Tensor

    def repeat(self, k: int) -> Memory:
        """Each row repeated k times in place (row b -> rows b·k .. b·k + k - 1)."""
        keys = None if self.keys is None else self.keys.repeat_interleave(k, 0)
        return Memory(self.values.repeat_interleave(k, 0), keys, self.mask.repeat_interleave(k, 0))


class Seq2Seq(Model):
    """Encoder-decoder with optional attention, teacher forcing, greedy and beam decoding."""

    config_class = Seq2SeqConfig

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__(config)
        E, Hd = config.embedding_size, config.decoder_hidden_size
        self.src_inputs = InputLayer(config.src_input_size, config.src_vocab_size, E, config.pad_id)
        self.encoder = build_encoder(config.encoder, self.src_inputs.output_size)
        He = self.encoder.output_size
        self.tgt_embedding = nn.Embedding(config.tgt_vocab_size, E, padding_idx=config.pad_id)
        self.attention = (
            None
            if config.attention == "none"
            else Attention(config.attention, Hd, He, config.attention_size)
        )
        feed = {"none": 0, "additive": He, "multiplicative": Hd}[config.attention]
        self.decoder_cell = make_cell(config.decoder_cell, E + feed, Hd)
        self._state_sizes = [shape[0] for shape in self.decoder_cell.state_shapes()]
        self.bridge = nn.Linear(He, sum(self._state_sizes))
        self.combine = None if self.attention is None else nn.Linear(Hd + He, Hd)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(Hd, config.tgt_vocab_size)

    # -- encoder -----------------------------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Tensor | None = None) -> tuple[Memory, DecoderState]:
        """Source (B, S) ids or (B, S, I) features -> (memory, initial decoder state)."""
        x = self.src_inputs(src)
        lengths = batch_lengths(src, src_lengths)
        h = self.encoder(x, lengths)  # (B, S, He), zero past each length
        B, S, _ = h.shape
        mask = valid_mask(lengths, B, S, h.device)  # (B, S)
        mean = h.sum(dim=1) / mask.sum(dim=1, keepdim=True).to(h.dtype)  # (B, He)
        s0 = torch.tanh(self.bridge(mean)).split(self._state_sizes, dim=1)
        state: DecoderState = tuple(s0)
        if self.config.attention == "multiplicative":
            state = (*state, h.new_zeros(B, self.config.decoder_hidden_size))  # o_0 = 0
        keys = None if self.attention is None else self.attention.keys(h)
        return Memory(h, keys, mask), state

    # -- one decoder step --------------------------------------------------------------------
    def decode_step(
        self, memory: Memory, tokens: Tensor, state: DecoderState
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """Previous tokens (N,) -> (logits (N, V), new state, attention weights (N, S) or None)."""
        e = self.dropout(self.tgt_embedding(tokens))  # (N, E)
        kind = self.config.attention
        n_cell = len(self._state_sizes)
        cell_state = state[:n_cell]
        alpha = None
        if kind == "none":
            s, cell_state = self.decoder_cell(e, cell_state)
            o = s
        elif kind == "additive":
            c, alpha = self.attention(cell_state[0], memory.keys, memory.values, memory.mask)
            s, cell_state = self.decoder_cell(torch.cat([e, c], dim=1), cell_state)
            o = torch.tanh(self.combine(torch.cat([s, c], dim=1)))  # (N, Hd)
        else:
            s, cell_state = self.decoder_cell(torch.cat([e, state[n_cell]], dim=1), cell_state)
            c, alpha = self.attention(s, memory.keys, memory.values, memory.mask)
            o = torch.tanh(self.combine(torch.cat([s, c], dim=1)))
        new_state = (*cell_state, o) if kind == "multiplicative" else tuple(cell_state)
        return self.output(self.dropout(o)), new_state, alpha

    # -- training ----------------------------------------------------------------------------
    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor | None,
        tgt_in: Tensor,
        *,
        teacher_forcing_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Decode along ``tgt_in`` (B, U) (starting with <bos>) -> (logits (B, U, V),
        attention (B, U, S) or None).

        Step t + 1 reads the true token tgt_in[:, t + 1] with probability
        ``teacher_forcing_ratio`` (drawn per sequence and step from ``generator``), else the
        model's own arg max at step t (Bengio et al. 2015's scheduled sampling).
        """
        ratio = check_float("teacher_forcing_ratio", teacher_forcing_ratio, low=0.0, high=1.0)
        self._check_targets("tgt_in", tgt_in, src.shape[0])
        memory, state = self.encode(src, src_lengths)
        B, U = tgt_in.shape
        tokens = tgt_in[:, 0]
        logits, alphas = [], []
        for t in range(U):
            logits_t, state, alpha = self.decode_step(memory, tokens, state)
            logits.append(logits_t)
            if alpha is not None:
                alphas.append(alpha)
            if t + 1 < U:
                tokens = tgt_in[:, t + 1]
                if ratio < 1.0:
                    draw = torch.rand(
                        B, generator=generator, device=generator.device if generator else None
                    )
                    own = logits_t.detach().argmax(dim=1)
                    tokens = torch.where(draw.to(tokens.device) < ratio, tokens, own)
        attention = torch.stack(alphas, dim=1) if alphas else None
        return torch.stack(logits, dim=1), attention

    def loss(
        self,
        src: Tensor,
        src_lengths: Tensor | None,
        tgt: Tensor,
        tgt_lengths: Tensor | None = None,
        *,
        teacher_forcing_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Mean cross-entropy over the target tokens after <bos> (padding ignored)."""
        self._check_targets("tgt", tgt, src.shape[0])
        if tgt.shape[1] < 2:
            raise ValueError(
                f"tgt must hold <bos> and at least one token, got {tgt.shape[1]} steps"
            )
        lengths = batch_lengths(tgt, tgt_lengths)
        if lengths is not None and int(lengths.min()) < 2:
            raise ValueError(
                f"tgt_lengths must be >= 2 (<bos> and one token), got {lengths.tolist()}"
            )
        logits, _ = self(
            src,
            src_lengths,
            tgt[:, :-1],
            teacher_forcing_ratio=teacher_forcing_ratio,
            generator=generator,
        )
        targets = tgt[:, 1:]  # (B, U-1)
        losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        if lengths is None:
            return losses.mean()
        mask = valid_mask(lengths - 1, *targets.shape, targets.device)
        return losses[mask].sum() / mask.sum()

    def _check_targets(self, name: str, tgt: object, batch_size: int) -> None:
        if not isinstance(tgt, Tensor) or tgt.dim() != 2 or tgt.dtype.is_floating_point:
            raise ValueError(f"{name} must be integer token ids (B, U), got {tgt!r:.80}")
        if tgt.shape[0] != batch_size:
            raise ValueError(
                f"{name} must have the source's batch {batch_size}, got {tgt.shape[0]}"
            )
        V = self.config.tgt_vocab_size
        if tgt.numel() and (int(tgt.min()) < 0 or int(tgt.max()) >= V):
            raise ValueError(f"{name} must lie in [0, tgt_vocab_size={V})")

    # -- decoding ----------------------------------------------------------------------------
    @torch.no_grad()
    def greedy_decode(
        self, src: Tensor, src_lengths: Tensor | None = None, *, max_length: int
    ) -> Decoded:
        """Arg max decoding, each sequence until its <eos> or ``max_length`` tokens."""
        check_int("max_length", max_length, low=1)
        cfg = self.config
        with eval_mode(self):
            memory, state = self.encode(src, src_lengths)
            return greedy_search(
                self._search_step(memory),
                state,
                batch_size=src.shape[0],
                bos_id=cfg.bos_id,
                eos_id=cfg.eos_id,
                pad_id=cfg.pad_id,
                max_length=max_length,
            )

    @torch.no_grad()
    def beam_search(
        self,
        src: Tensor,
        src_lengths: Tensor | None = None,
        *,
        beam_size: int,
        max_length: int,
        length_penalty: float = 0.0,
    ) -> Decoded:
        """Beam search (:mod:`rnnkit.models.beam`): the best of ``beam_size`` hypotheses per
        sequence, ranked by log P / length ** ``length_penalty``."""
        K = check_int("beam_size", beam_size, low=1)
        check_int("max_length", max_length, low=1)
        cfg = self.config
        with eval_mode(self):
            memory, state = self.encode(src, src_lengths)
            state = tuple(s.repeat_interleave(K, 0) for s in state)  # (B·K, ·)
            return beam_search(
                self._search_step(memory.repeat(K)),
                state,
                batch_size=src.shape[0],
                beam_size=K,
                bos_id=cfg.bos_id,
                eos_id=cfg.eos_id,
                pad_id=cfg.pad_id,
                max_length=max_length,
                length_penalty=length_penalty,
            )

    def _search_step(self, memory: Memory) -> StepFn:
        """The decoder as beam.py sees it: log-probabilities of the next token."""

        def step(tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor | None]:
            logits, state, alpha = self.decode_step(memory, tokens, state)
            return F.log_softmax(logits, dim=-1), state, alpha

        return step
