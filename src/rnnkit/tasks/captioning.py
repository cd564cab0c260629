"""``captioning``: describe images of 2-4 handwritten digits in words (the lecture's first
slide, scaled down).

Data: :func:`rnnkit.datasets.captions.load_captioned_digits` ("a three left of a seven above
a one"; test images are built from digit images never seen in training).

Model: :class:`rnnkit.models.Seq2Seq` with an image encoder. :class:`ImageEncoder` (registered
as the encoder type ``"cnn"``) reads the S x S image as S rows of S pixels, the layout
``Seq2Seq`` hands a feature source, and returns the cells of its last feature map as the
sequence the decoder attends to: (B, S, S) -> (B, (S/4)², H). Two coordinate channels (row and
column in [-1, 1], Liu et al. 2018's CoordConv) are added to the pixels so that every cell's
features say where it is, which "left of" and "above" need. A GRU decoder with additive
attention (Bahdanau et al. 2015; Xu et al. 2015 for images) writes the caption.

Metrics on the test images: exact match of the whole caption and corpus BLEU (sacrebleu).
Baseline: the same model without attention (``--model.attention=none``), whose decoder sees
the image only through its initial state (the mean of the encoder's cells).
``attention.png`` shows where the decoder looks while it writes each word.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..datasets._deps import require
from ..datasets.captions import WORDS, CaptionedImages, load_captioned_digits
from ..models import Seq2Seq, Seq2SeqConfig
from ..models.checks import check_int
from ..models.encoder import register_encoder
from ..text import Vocab
from ..training.config import OptimConfig, TrainerConfig
from ..training.loader import BatchLoader, ResumableLoader, shuffled_batches
from ..training.modules import PairBatch, Seq2SeqModule
from .base import Task

MAX_WORDS = 16  # the longest caption has 13 words, then <eos>


# -- the image encoder -----------------------------------------------------------------------------
@dataclass
class ImageEncoderConfig:
    """A small CNN: conv 3x3 (``channels``) twice, max-pool 2, conv 3x3 (2·``channels``),
    max-pool 2, conv 1x1 to ``hidden_size``; batch norm and ReLU after each 3x3 convolution
    (without batch norm the captions' loss stays for hundreds of steps where the words alone
    put it, the image unused)."""

    type: ClassVar[str] = "cnn"

    channels: int = 32
    hidden_size: int = 64

    def __post_init__(self) -> None:
        check_int("encoder.channels", self.channels, low=1)
        check_int("encoder.hidden_size", self.hidden_size, low=1)


class ImageEncoder(nn.Module):
    """Images (B, S, S) -> feature-map cells (B, (S/4)², H) in reading order.

    Follows the encoder contract of :mod:`rnnkit.models.encoder` except that the output has
    one step per cell of the feature map, not per input row; it is not causal and takes no
    ``lengths`` (an image has no padding).
    """

    causal = False

    def __init__(self, config: ImageEncoderConfig, input_size: int) -> None:
        super().__init__()
        check_int("input_size", input_size, low=4)
        c = config.channels
        self.input_size = input_size
        self.output_size = config.hidden_size
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * c, config.hidden_size, 1),
        )  # fmt: skip

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, S, S) images -> (B, (S/4)², H)."""
        if lengths is not None:
            raise ValueError("the image encoder reads whole images: lengths must be None")
        if x.dim() != 3 or x.shape[1] != x.shape[2] or x.shape[2] != self.input_size:
            raise ValueError(
                f"x must be square images (B, {self.input_size}, {self.input_size}), got "
                f"{tuple(x.shape)}"
            )
        B, S, _ = x.shape
        axis = torch.linspace(-1.0, 1.0, S, dtype=x.dtype, device=x.device)
        rows = axis.view(1, 1, S, 1).expand(B, 1, S, S)
        cols = axis.view(1, 1, 1, S).expand(B, 1, S, S)
        maps = self.net(torch.cat([x.unsqueeze(1), rows, cols], dim=1))  # (B, H, S/4, S/4)
        return maps.flatten(2).transpose(1, 2)  # (B, (S/4)², H)


register_encoder("cnn", ImageEncoderConfig, ImageEncoder)


# -- the task --------------------------------------------------------------------------------------
@dataclass
class CaptionData:
    n_train: int = 10_000
    n_valid: int = 500
    n_test: int = 1_000
    seed: int = 0  # the images' seed (data generation), not the training seed
    canvas: int = 36
    beam_size: int = 1  # 1: greedy decoding


@dataclass
class CaptionConfig:
    data: CaptionData = field(default_factory=CaptionData)
    model: Seq2SeqConfig = field(
        default_factory=lambda: Seq2SeqConfig(
            tgt_vocab_size=len(WORDS) + 4,  # set from the data (as are the others below)
            src_input_size=36,
            embedding_size=32,
            encoder=ImageEncoderConfig(),
            decoder_cell="gru",
            decoder_hidden_size=128,
            attention="additive",
            attention_size=64,
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=4000, batch_size=64, val_every_n_steps=200, checkpoint_every_n_steps=200
        )
    )
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-3))


@dataclass
class CaptionData_:
    vocab: Vocab
    sets: dict[str, CaptionedImages]
    x: dict[str, Tensor]  # split -> (N, S, S)
    y: dict[str, list[list[int]]]  # split -> <bos> words <eos>


def caption_vocab() -> Vocab:
    """<pad> <unk> <bos> <eos> and the caption words, in a fixed order."""
    return Vocab(WORDS)


class CaptioningTask(Task):
    name = "captioning"
    config_class = CaptionConfig
    module_class = Seq2SeqModule
    derived_keys = ("model.tgt_vocab_size", "model.src_vocab_size", "model.src_input_size",
                    "model.pad_id", "model.bos_id", "model.eos_id")  # fmt: skip

    def load_data(self, config: CaptionConfig) -> CaptionData_:
        d = config.data
        sizes = {"train": d.n_train, "valid": d.n_valid, "test": d.n_test}
        sets = {s: load_captioned_digits(s, n, seed=d.seed, canvas=d.canvas)
                for s, n in sizes.items()}  # fmt: skip
        vocab = caption_vocab()
        x = {s: torch.from_numpy(c.images) for s, c in sets.items()}
        y = {s: [vocab.encode(t.split(), add_bos=True, add_eos=True) for t in c.captions]
             for s, c in sets.items()}  # fmt: skip
        return CaptionData_(vocab, sets, x, y)

    def derive(self, config: CaptionConfig, data: CaptionData_) -> CaptionConfig:
        v = data.vocab
        model = replace(config.model, tgt_vocab_size=len(v), src_vocab_size=0,
                        src_input_size=config.data.canvas, pad_id=v.pad_id, bos_id=v.bos_id,
                        eos_id=v.eos_id)  # fmt: skip
        return replace(config, model=model)

    def build_model(self, config: CaptionConfig, data: CaptionData_) -> Seq2Seq:
        return Seq2Seq(config.model)

    def vocab(self, data: CaptionData_) -> dict[str, Any]:
        return {"target": data.vocab.to_dict()}

    def _collate(self, data: CaptionData_, split: str):
        x, y, pad = data.x[split], data.y[split], data.vocab.pad_id

        def collate(index: list[int]) -> PairBatch:
            lengths = torch.tensor([len(y[i]) for i in index])
            tgt = torch.full((len(index), int(lengths.max())), pad, dtype=torch.int64)
            for b, i in enumerate(index):
                tgt[b, : len(y[i])] = torch.tensor(y[i])
            # no source lengths: every image is whole
            return PairBatch(x[torch.as_tensor(index)], None, tgt, lengths)

        return collate

    def train_loader(self, config: CaptionConfig, data: CaptionData_, rank: int, world: int):
        plan = shuffled_batches(len(data.y["train"]), config.trainer.batch_size,
                                seed=config.trainer.seed)  # fmt: skip
        return ResumableLoader(plan, self._collate(data, "train"), rank=rank, world_size=world)

    def val_loader(self, config: CaptionConfig, data: CaptionData_, rank: int, world: int):
        plan = shuffled_batches(len(data.y["valid"]), 250, seed=0, shuffle=False, drop_last=False)
        return BatchLoader(plan, self._collate(data, "valid"))

    def describe(self, model: Seq2Seq, vocab: Vocab, images: Tensor, beam: int) -> tuple:
        """Captions of ``images`` (B, S, S) and the attention (B, L, cells) or None."""
        model.eval()
        if beam == 1:
            out = model.greedy_decode(images, max_length=MAX_WORDS)
        else:
            out = model.beam_search(images, beam_size=beam, max_length=MAX_WORDS)
        texts = [" ".join(vocab.decode(row[:n], skip_specials=True))
                 for row, n in zip(out.tokens.tolist(), out.lengths.tolist())]  # fmt: skip
        return texts, out.attention

    def evaluate(
        self, model: Seq2Seq, config: CaptionConfig, data: CaptionData_, run_dir: Path
    ) -> dict[str, Any]:
        sacrebleu = require("sacrebleu", package="sacrebleu", needed_for="the captioning BLEU")
        refs = data.sets["test"].captions
        hyps: list[str] = []
        for lo in range(0, len(refs), 250):
            hyps += self.describe(model, data.vocab, data.x["test"][lo : lo + 250],
                                  config.data.beam_size)[0]  # fmt: skip
        bleu = sacrebleu.corpus_bleu(hyps, [refs])
        exact = np.array([h == r for h, r in zip(hyps, refs)])
        n_digits = (data.sets["test"].digits >= 0).sum(axis=1)
        self._attention_png(model, data, run_dir / "attention.png")
        return {
            "split": "test",
            "images": len(refs),
            "exact_match": float(exact.mean()),
            "exact_match_by_digits": {
                int(k): float(exact[n_digits == k].mean()) for k in np.unique(n_digits)
            },  # fmt: skip
            "bleu": float(bleu.score),
            "attention": config.model.attention,
            "errors": [{"truth": r, "caption": h} for h, r in zip(hyps, refs) if h != r][:10],
        }

    def _attention_png(self, model: Seq2Seq, data: CaptionData_, path: Path) -> Path | None:
        from ..training.plots import plt, save_figure

        image = data.x["test"][:1]
        texts, attention = self.describe(model, data.vocab, image, 1)
        if attention is None:
            return None
        words = [*texts[0].split(), "<eos>"]
        S = image.shape[1]
        side = int(round(attention.shape[2] ** 0.5))
        fig, axes = plt.subplots(1, len(words) + 1, figsize=(1.6 * (len(words) + 1), 2.0))
        axes[0].imshow(image[0].numpy(), cmap="gray_r")
        axes[0].set_title("image", fontsize=8)
        for ax, word, weights in zip(axes[1:], words, attention[0]):
            ax.imshow(image[0].numpy(), cmap="gray_r")
            grid = weights.view(side, side).numpy()
            ax.imshow(grid, cmap="viridis", alpha=0.6, extent=(-0.5, S - 0.5, S - 0.5, -0.5))
            ax.set_title(word, fontsize=8)
        for ax in axes:
            ax.axis("off")
        fig.suptitle(f"captioning: attention while writing '{texts[0]}'", fontsize=9)
        return save_figure(fig, path)

    def report(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"test captions ({metrics['attention']} attention): exact match "
            f"{metrics['exact_match']:.2%}, BLEU {metrics['bleu']:.1f} on {metrics['images']} "
            "images of unseen digit images"
        ]
