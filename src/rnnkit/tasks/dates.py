"""``dates``: translate dates as people write them, in 16 languages and 4 styles, to ISO 8601.

The lecture's attention model on its own example (date normalisation): a bidirectional GRU
reads the characters of "jeudi 4 mars 2021" or "04.03.21", and a GRU decoder with additive
attention (Bahdanau et al. 2015) writes "2021-03-04" character by character
(:class:`rnnkit.models.Seq2Seq`). Data: :mod:`rnnkit.datasets.dates` (babel's CLDR patterns;
test dates never occur in training).

Metric: exact-match accuracy of greedy decoding on the test pairs, overall and per locale.
``attention.png`` shows where the decoder looked for three test inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data import BucketBatchSampler, pad_batch
from ..datasets.dates import LOCALES, DatePair, load_dates
from ..models import RecurrentEncoderConfig
from ..models.seq2seq import Seq2Seq, Seq2SeqConfig
from ..text import Vocab
from ..training.config import OptimConfig, TrainerConfig
from ..training.loader import BatchLoader, ResumableLoader
from ..training.modules import PairBatch, Seq2SeqModule
from ..training.plots import attention_maps
from .base import Task

MAX_OUTPUT = 12  # "YYYY-MM-DD" is 10 characters, then <eos>


@dataclass
class DatesData:
    n_train: int = 40_000
    n_valid: int = 1_000
    n_test: int = 4_000
    beam_size: int = 1  # 1: greedy decoding for the test metric


@dataclass
class DatesConfig:
    data: DatesData = field(default_factory=DatesData)
    model: Seq2SeqConfig = field(
        default_factory=lambda: Seq2SeqConfig(
            tgt_vocab_size=4,  # placeholder: set from the data (as is src_vocab_size)
            src_vocab_size=4,
            embedding_size=32,
            encoder=RecurrentEncoderConfig(cell="gru", hidden_size=64, bidirectional=True),
            decoder_cell="gru",
            decoder_hidden_size=128,
            attention="additive",
            attention_size=64,
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=2500, batch_size=64, val_every_n_steps=250, checkpoint_every_n_steps=250
        )
    )
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=3e-3, schedule="cosine", warmup_steps=50)
    )


@dataclass
class DatesData_:
    src_vocab: Vocab
    tgt_vocab: Vocab
    pairs: dict[str, list[DatePair]]
    src: dict[str, list[list[int]]]
    tgt: dict[str, list[list[int]]]  # <bos> ... <eos>


class DatesTask(Task):
    name = "dates"
    config_class = DatesConfig
    module_class = Seq2SeqModule
    derived_keys = ("model.tgt_vocab_size", "model.src_vocab_size", "model.src_input_size",
                    "model.pad_id", "model.bos_id", "model.eos_id")  # fmt: skip

    def load_data(self, config: DatesConfig) -> DatesData_:
        d, seed = config.data, config.trainer.seed
        sizes = {"train": d.n_train, "valid": d.n_valid, "test": d.n_test}
        pairs = {s: load_dates(s, n, seed=seed) for s, n in sizes.items()}
        src_vocab = Vocab.build([p.source for p in pairs["train"]])
        tgt_vocab = Vocab.build([p.target for p in pairs["train"]])
        src = {s: [src_vocab.encode(p.source) for p in ps] for s, ps in pairs.items()}
        tgt = {
            s: [tgt_vocab.encode(p.target, add_bos=True, add_eos=True) for p in ps]
            for s, ps in pairs.items()
        }
        return DatesData_(src_vocab, tgt_vocab, pairs, src, tgt)

    def derive(self, config: DatesConfig, data: DatesData_) -> DatesConfig:
        t = data.tgt_vocab
        model = replace(
            config.model, tgt_vocab_size=len(t), src_vocab_size=len(data.src_vocab),
            pad_id=t.pad_id, bos_id=t.bos_id, eos_id=t.eos_id,
        )  # fmt: skip
        return replace(config, model=model)

    def build_model(self, config: DatesConfig, data: DatesData_) -> Seq2Seq:
        return Seq2Seq(config.model)

    def vocab(self, data: DatesData_) -> dict[str, Any]:
        return {"source": data.src_vocab.to_dict(), "target": data.tgt_vocab.to_dict()}

    def _collate(self, data: DatesData_, split: str):
        src, tgt, pad = data.src[split], data.tgt[split], data.tgt_vocab.pad_id

        def collate(index: list[int]) -> PairBatch:
            s, s_len, _ = pad_batch([src[i] for i in index], value=data.src_vocab.pad_id)
            t, t_len, _ = pad_batch([tgt[i] for i in index], value=pad)
            return PairBatch(s.long(), s_len, t.long(), t_len)

        return collate

    def train_loader(self, config: DatesConfig, data: DatesData_, rank: int, world: int):
        sampler = BucketBatchSampler(
            [len(s) for s in data.src["train"]], config.trainer.batch_size,
            drop_last=True, seed=config.trainer.seed,
        )  # fmt: skip
        return ResumableLoader(
            sampler.batches, self._collate(data, "train"), rank=rank, world_size=world
        )

    def val_loader(self, config: DatesConfig, data: DatesData_, rank: int, world: int):
        sampler = BucketBatchSampler([len(s) for s in data.src["valid"]], 256, shuffle=False)
        batches = sampler.batches(0)
        return BatchLoader(lambda epoch: batches, self._collate(data, "valid"))

    # -- decoding ----------------------------------------------------------------------------
    def decode(
        self, model: Seq2Seq, src_vocab: Vocab, tgt_vocab: Vocab, texts: list[str], beam: int
    ) -> tuple[list[str], Any]:
        """ISO strings for ``texts`` (and the decoder's attention, (B, L, S) or None)."""
        model.eval()
        x, lengths, _ = pad_batch([src_vocab.encode(t) or [src_vocab.unk_id] for t in texts],
                                  value=src_vocab.pad_id)  # fmt: skip
        x = x.long()
        if beam == 1:
            out = model.greedy_decode(x, lengths, max_length=MAX_OUTPUT)
        else:
            out = model.beam_search(x, lengths, beam_size=beam, max_length=MAX_OUTPUT)
        strings = [
            "".join(tgt_vocab.decode(row[:n], skip_specials=True))
            for row, n in zip(out.tokens.tolist(), out.lengths.tolist())
        ]
        return strings, out.attention

    def evaluate(
        self, model: Seq2Seq, config: DatesConfig, data: DatesData_, run_dir: Path
    ) -> dict[str, Any]:
        pairs = data.pairs["test"]
        predicted: list[str] = []
        for i in range(0, len(pairs), 500):
            chunk = [p.source for p in pairs[i : i + 500]]
            predicted += self.decode(model, data.src_vocab, data.tgt_vocab, chunk,
                                     config.data.beam_size)[0]  # fmt: skip
        hits = np.array([p == q.target for p, q in zip(predicted, pairs)])
        per_locale = {loc: float(hits[[q.locale == loc for q in pairs]].mean()) for loc in LOCALES}
        examples = [
            next(q for q in pairs if q.locale == loc and q.style == style)
            for loc, style in (("de_DE", "full"), ("ru_RU", "long"), ("en_US", "medium"))
        ]
        self._attention_png(model, data, examples, run_dir / "attention.png")
        wrong = [
            {"source": q.source, "target": q.target, "predicted": p}
            for p, q in zip(predicted, pairs)
            if p != q.target
        ]
        return {
            "split": "test",
            "n": len(pairs),
            "locales": len(LOCALES),
            "exact_match": float(hits.mean()),
            "exact_match_by_locale": per_locale,
            "worst_locale": min(per_locale, key=per_locale.get),
            "errors": wrong[:20],
        }

    def _attention_png(
        self, model: Seq2Seq, data: DatesData_, examples: list[DatePair], path: Path
    ) -> None:
        maps = []
        for q in examples:
            out, attention = self.decode(model, data.src_vocab, data.tgt_vocab, [q.source], 1)
            if attention is None:
                return
            n = len(out[0]) + 1  # the characters and <eos>
            maps.append((attention[0, :n, : len(q.source)].numpy(), list(q.source),
                         [*out[0], "</s>"]))  # fmt: skip
        attention_maps(maps, path, title="dates: where the decoder attends")

    def report(self, metrics: dict[str, Any]) -> list[str]:
        worst = metrics["worst_locale"]
        return [
            f"test exact match {metrics['exact_match']:.2%} on {metrics['n']} dates in "
            f"{metrics['locales']} locales (lowest: {worst} "
            f"{metrics['exact_match_by_locale'][worst]:.2%})"
        ]

    def translate(self, model: Seq2Seq, run: Any, texts: list[str], *, beam: int) -> list[str]:
        """ISO dates for ``texts`` with a trained model of the run folder ``run``."""
        from ..models import load_vocab

        vocab = load_vocab(run.model)
        src, tgt = Vocab.from_dict(vocab["source"]), Vocab.from_dict(vocab["target"])
        return self.decode(model, src, tgt, list(texts), beam)[0]
