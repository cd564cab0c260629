"""What a model reads: real-valued features per step, or token ids through an embedding."""

from __future__ import annotations

from torch import Tensor, nn

from .checks import check_int


class InputLayer(nn.Module):
    """Features (B, T, I) pass through unchanged; token ids (B, T) become (B, T, E).

    Args:
        input_size: I, features per step; used when ``vocab_size`` is 0.
        vocab_size: V > 0 makes the model read integer token ids in [0, V).
        embedding_size: E, the embedding width (token input only).
        pad_id: the padding token, whose embedding is zero and gets no gradient.
    """

    def __init__(self, input_size: int, vocab_size: int, embedding_size: int, pad_id: int) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size)
        if vocab_size:
            check_int("embedding_size", embedding_size, low=1)
            check_int("pad_id", pad_id)
            if pad_id >= vocab_size:
                raise ValueError(f"pad_id must be < vocab_size={vocab_size}, got {pad_id}")
            self.embedding: nn.Embedding | None = nn.Embedding(
                vocab_size, embedding_size, padding_idx=pad_id
            )
            self.output_size = embedding_size
        else:
            check_int("input_size", input_size, low=1)
            self.embedding = None
            self.output_size = input_size
        self.vocab_size = vocab_size

    @property
    def tokens(self) -> bool:
        """True when the model reads token ids."""
        return self.embedding is not None

    def forward(self, x: Tensor) -> Tensor:
        """(B, T) ids or (B, T, I) features -> (B, T, E or I)."""
        self.check(x)
        return x if self.embedding is None else self.embedding(x)

    def check(self, x: object) -> None:
        """Raise a clear error unless ``x`` is a batch this layer reads."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a Tensor, got {type(x).__name__}")
        if self.embedding is not None:
            if x.dim() != 2 or x.dtype.is_floating_point or x.dtype.is_complex:
                raise ValueError(
                    f"x must be integer token ids of shape (B, T), got dtype {x.dtype} and "
                    f"shape {tuple(x.shape)}"
                )
        elif x.dim() != 3 or x.shape[2] != self.output_size or not x.dtype.is_floating_point:
            raise ValueError(
                f"x must be a float tensor (B, T, I={self.output_size}), got dtype {x.dtype} "
                f"and shape {tuple(x.shape)}"
            )
