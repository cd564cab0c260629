"""``charlm``: a character language model of Shakespeare's complete works.

The lecture's causal language model at the character level (min-char-rnn, char-rnn). Data:
:func:`rnnkit.datasets.load_shakespeare`, split by work (34 train, 4 validation, 4 test).

Training reads random windows of ``seq_len + 1`` characters of the training works joined
together (a fresh offset and order every epoch, nanoGPT's ``get_batch`` made deterministic);
each window starts from the zero state.

Metric: held-out nats per character on the test works, read as 32 parallel streams that carry
their state from window to window, so every prediction sees all the text before it in its
stream (except the first character of each stream, which is not predicted). Bits per character
are nats / ln 2. The baseline is the unigram model: the training characters' frequencies
(add-one smoothed), scored on the same predicted characters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets.shakespeare import load_shakespeare
from ..models import LanguageModel, RecurrentEncoderConfig
from ..models.generation import generate
from ..models.language_model import LanguageModelConfig, batchify, windows
from ..text import Vocab, char_vocab
from ..training.config import OptimConfig, TrainerConfig
from ..training.loader import BatchLoader, ResumableLoader
from ..training.modules import LanguageModelModule, TokenBatch
from .base import Task

EVAL_STREAMS = 32


@dataclass
class CharLMData:
    seq_len: int = 128  # characters per training window (the truncation length of BPTT)
    train_chars: int = 0  # use the first N training characters only; 0 = all 4.16 M
    val_chars: int = 100_000  # validation loss on the first N characters of the valid works
    test_chars: int = 0  # score the first N test characters only; 0 = all 457 K
    sample_length: int = 600
    sample_prime: str = "\n"
    sample_temperature: float = 0.8


@dataclass
class CharLMConfig:
    data: CharLMData = field(default_factory=CharLMData)
    model: LanguageModelConfig = field(
        default_factory=lambda: LanguageModelConfig(
            vocab_size=4,  # placeholder: set from the data (as are the special ids)
            embedding_size=64,
            encoder=RecurrentEncoderConfig(cell="lstm", hidden_size=512, num_layers=1),
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=6000,
            batch_size=32,
            val_every_n_steps=250,
            val_batches=25,
            checkpoint_every_n_steps=250,
        )
    )
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=2e-3, schedule="cosine", warmup_steps=100)
    )


@dataclass
class CharLMData_:
    vocab: Vocab
    ids: dict[str, torch.Tensor]  # split -> (N,) int16 character ids


def join_works(works: dict[str, str]) -> str:
    """The works of a split as one text, in name order, separated by blank lines."""
    return "\n\n".join(works.values())


def encode(vocab: Vocab, text: str) -> torch.Tensor:
    """(N,) int16 ids of ``text`` (unknown characters map to ``<unk>``)."""
    table = {c: vocab[c] for c in set(text)}
    return torch.tensor([table[c] for c in text], dtype=torch.int16)


def unigram_nats(train_ids: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> float:
    """Mean -log P(c) of ``targets`` under add-one smoothed training character frequencies."""
    counts = torch.bincount(train_ids.long(), minlength=vocab_size).double() + 1.0
    log_p = counts.log() - counts.sum().log()  # (V,)
    return float(-log_p[targets.long()].mean())


class CharLMTask(Task):
    name = "charlm"
    config_class = CharLMConfig
    module_class = LanguageModelModule
    derived_keys = ("model.vocab_size", "model.pad_id", "model.bos_id", "model.eos_id")

    def load_data(self, config: CharLMConfig) -> CharLMData_:
        texts = {s: join_works(load_shakespeare(s)) for s in ("train", "valid", "test")}
        limits = {"train": config.data.train_chars, "valid": config.data.val_chars,
                  "test": config.data.test_chars}  # fmt: skip
        for split, limit in limits.items():
            if limit:
                texts[split] = texts[split][:limit]
        vocab = char_vocab([texts["train"]], normalize=None)
        return CharLMData_(vocab, {s: encode(vocab, t) for s, t in texts.items()})

    def derive(self, config: CharLMConfig, data: CharLMData_) -> CharLMConfig:
        v = data.vocab
        model = replace(
            config.model, vocab_size=len(v), pad_id=v.pad_id, bos_id=v.bos_id, eos_id=v.eos_id
        )
        return replace(config, model=model)

    def build_model(self, config: CharLMConfig, data: CharLMData_) -> LanguageModel:
        return LanguageModel(config.model)

    def vocab(self, data: CharLMData_) -> dict[str, Any]:
        return data.vocab.to_dict()

    def train_loader(self, config: CharLMConfig, data: CharLMData_, rank: int, world: int):
        stream = data.ids["train"]
        T, B, seed = config.data.seq_len, config.trainer.batch_size, config.trainer.seed
        count = (stream.shape[0] - 1 - T) // T  # windows per epoch, whatever the offset
        if count < B:
            raise ValueError(
                f"the training text holds {count} windows of {T + 1} characters, fewer than "
                f"one batch of {B}; lower trainer.batch_size or data.seq_len"
            )

        def plan(epoch: int) -> list[list[int]]:
            rng = np.random.default_rng([seed, epoch])
            offset = int(rng.integers(T))
            starts = offset + T * rng.permutation(count)
            return [starts[i : i + B].tolist() for i in range(0, count - count % B, B)]

        return ResumableLoader(plan, _windows_of(stream, T), rank=rank, world_size=world)

    def val_loader(self, config: CharLMConfig, data: CharLMData_, rank: int, world: int):
        stream = data.ids["valid"]
        T, B = config.data.seq_len, config.trainer.batch_size
        starts = list(range(0, stream.shape[0] - T - 1, T))
        if not starts:
            raise ValueError(f"data.val_chars must exceed data.seq_len + 1 = {T + 1}")
        batches = [starts[i : i + B] for i in range(0, len(starts), B)]
        return BatchLoader(lambda epoch: batches, _windows_of(stream, T))

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(
        self, model: LanguageModel, config: CharLMConfig, data: CharLMData_, run_dir: Path
    ) -> dict[str, Any]:
        model.eval()
        streams = batchify(data.ids["test"].long(), EVAL_STREAMS)  # (32, N / 32)
        total, count, state = 0.0, 0, None
        with torch.no_grad():
            for inputs, targets in windows(streams, config.data.seq_len):
                loss, state = model.stream_loss(inputs, targets, state, reduction="sum")
                total += float(loss)
                count += targets.numel()
        nats = total / count
        baseline = unigram_nats(data.ids["train"], streams[:, 1:], len(data.vocab))
        d = config.data
        sample = self._sample(
            model, data.vocab, d.sample_prime, d.sample_length, d.sample_temperature, 0
        )
        (run_dir / "sample.txt").write_text(sample, encoding="utf-8")
        return {
            "split": "test",
            "characters": count,
            "nats_per_char": nats,
            "bits_per_char": nats / math.log(2.0),
            "baseline_unigram_nats_per_char": baseline,
            "baseline_unigram_bits_per_char": baseline / math.log(2.0),
            "sample": sample,
        }

    def report(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"held-out loss {metrics['nats_per_char']:.4f} nats/char "
            f"({metrics['bits_per_char']:.4f} bits/char) on {metrics['characters']:,} test "
            f"characters; unigram baseline {metrics['baseline_unigram_nats_per_char']:.4f} "
            f"nats/char",
            "sample:",
            *("    " + line for line in metrics["sample"].splitlines()),
        ]

    # -- sampling ----------------------------------------------------------------------------
    def _sample(
        self, model: LanguageModel, vocab: Vocab, prime: str, length: int, temperature: float,
        seed: int,
    ) -> str:  # fmt: skip
        prompt = torch.tensor([vocab.encode(prime or "\n")], dtype=torch.long)
        out = generate(model, max_length=length, prompt=prompt, temperature=temperature, seed=seed)
        return prime + "".join(vocab.decode(out.tokens[0], skip_specials=True))

    def sample(
        self, model: LanguageModel, run: Any, *, length: int, temperature: float, prime: str,
        seed: int,
    ) -> str:  # fmt: skip
        """Text from a trained model of the run folder ``run`` (``rnnkit sample``)."""
        from ..models import load_vocab

        vocab = Vocab.from_dict(load_vocab(run.model))
        return self._sample(model, vocab, prime, length, temperature, seed)


def _windows_of(stream: torch.Tensor, T: int):
    def collate(starts: list[int]) -> TokenBatch:
        index = torch.as_tensor(starts).unsqueeze(1) + torch.arange(T + 1)  # (B, T + 1)
        return TokenBatch(stream[index].long())

    return collate
