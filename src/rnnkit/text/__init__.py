"""Text preprocessing without torch: tokenisers, vocabularies, one-hot encoding."""

from .onehot import one_hot, to_index
from .tokenize import (
    PRINTABLE_ASCII,
    WORD_ONLY_PATTERN,
    WORD_PATTERN,
    ascii_char_vocab,
    char_tokens,
    char_vocab,
    read_text,
    word_tokens,
)
from .vocab import DEFAULT_SPECIALS, Vocab

__all__ = [
    "DEFAULT_SPECIALS",
    "PRINTABLE_ASCII",
    "WORD_ONLY_PATTERN",
    "WORD_PATTERN",
    "Vocab",
    "ascii_char_vocab",
    "char_tokens",
    "char_vocab",
    "one_hot",
    "read_text",
    "to_index",
    "word_tokens",
]
