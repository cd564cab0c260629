r"""word2vec skip-gram with negative sampling (SGNS), the lecture's self-supervised
centre/context pairs (Mikolov et al. 2013, "Distributed Representations of Words and Phrases").

Every word w has an input vector v_w (a row of ``syn0``, the embedding we keep) and an output
vector u_w (a row of ``syn1``). For a centre word o at position i, a reduced window
w_i ~ U{1, ..., W} (dynamic window shrinking: near words count more) gives the context words
c at positions i - w_i ... i + w_i, and each (o, c) pair adds to the loss

.. math::
    \ell(o, c) = -\log \sigma(u_o \cdot v_c) - \sum_{k=1}^{K} \log \sigma(-u_{n_k} \cdot v_c),
    \qquad n_k \sim P_n(w) \propto f_w^{0.75}

(a noise draw equal to o is skipped). Training is plain SGD, one pair at a time, with the
learning rate decaying linearly from ``alpha`` to ``min_alpha`` over all epochs; frequent
words are sub-sampled (see :mod:`rnnkit.word2vec.corpus`). v_c is the input vector of the
*context* word and u_o the output vector of the centre, as in word2vec.c; by symmetry of the
pair set this is the same model as the lecture's "predict the context from the centre".

Two engines run the same algorithm: "c" (``_sgns.c``, several threads, CPU) and "torch"
(minibatched tensor ops, CPU or GPU); "auto" picks "c" on CPU when a C compiler exists.
The reported loss of an epoch is the mean of \ell over the epoch's pairs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..embeddings import WordVectors
from ..text.vocab import Vocab
from . import _cengine, _torchengine, evaluate, queries
from .corpus import (
    Encoded,
    alias_table,
    count_words,
    encode,
    job_bounds,
    keep_probabilities,
    noise_distribution,
)

log = logging.getLogger(__name__)

ENGINES = ("auto", "c", "torch")


@dataclass
class Word2VecConfig:
    """Hyper-parameters (defaults: gensim's ``Word2Vec(sg=1)``; Mikolov et al. 2013).

    Attributes:
        vector_size: E, the embedding size.
        window: W, the largest distance between a centre and a context word.
        min_count: words seen fewer times are dropped from the corpus.
        max_vocab_size: keep only this many most frequent words (None: no cap).
        sample: sub-sampling threshold t (0: keep every word).
        negative: K, noise words per pair.
        ns_exponent: the power of the noise distribution (0.75).
        alpha, min_alpha: the learning rate decays linearly from ``alpha`` to ``min_alpha``.
        epochs: passes over the corpus.
        batch_words: words per job (the unit of work of a thread and of the rate schedule).
        workers: threads of the "c" engine.
        engine: "auto", "c" or "torch".
        device: where the vectors live ("cpu", "cuda", ...); not "cpu" needs engine "torch".
        minibatch: pairs per step of the "torch" engine.
        seed: seeds initial vectors and every random draw.
        compute_loss: track the loss (costs a logarithm per term).
        progress: show a progress bar (tqdm).
    """

    vector_size: int = 100
    window: int = 5
    min_count: int = 5
    max_vocab_size: int | None = None
    sample: float = 1e-3
    negative: int = 5
    ns_exponent: float = 0.75
    alpha: float = 0.025
    min_alpha: float = 0.0001
    epochs: int = 5
    batch_words: int = 10_000
    workers: int = 2
    engine: str = "auto"
    device: str = "cpu"
    minibatch: int = 512
    seed: int = 1
    compute_loss: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("vector_size", "window", "min_count", "epochs", "batch_words", "workers",
                     "minibatch"):  # fmt: skip
            _check_int(name, getattr(self, name), lowest=1)
        _check_int("negative", self.negative, lowest=0)
        if self.max_vocab_size is not None:
            _check_int("max_vocab_size", self.max_vocab_size, lowest=1)
        if not 0 <= self.sample < 1:
            raise ValueError(f"sample must lie in [0, 1), got {self.sample}")
        if not 0 < self.min_alpha <= self.alpha:
            raise ValueError(
                f"need 0 < min_alpha <= alpha, got alpha={self.alpha}, min_alpha={self.min_alpha}"
            )
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if torch.device(self.device).type != "cpu" and self.engine == "c":
            raise ValueError(f"engine='c' runs on the CPU only, got device={self.device!r}")


@dataclass
class EpochStats:
    """What one epoch did: mean loss per pair, pairs, words read and kept, time."""

    epoch: int
    loss: float
    pairs: int
    noise_words: int
    raw_words: int
    kept_words: int
    alpha: float
    seconds: float
    words_per_second: float = field(init=False)

    def __post_init__(self) -> None:
        self.words_per_second = self.raw_words / self.seconds if self.seconds > 0 else math.inf


class Word2Vec:
    """Skip-gram with negative sampling (see the module docstring).

    ``Word2Vec(config).fit(sentences)`` builds the vocabulary and trains; or call
    :meth:`build_vocab` then :meth:`train`. ``sentences`` is a re-iterable of token lists
    (e.g. ``[word_tokens(line, lower=True) for line in lines]``).

    After training, ``model.wv`` holds the input vectors (V, E) as :class:`WordVectors` and
    ``model.history`` one :class:`EpochStats` per epoch.
    """

    def __init__(self, config: Word2VecConfig | None = None) -> None:
        self.config = Word2VecConfig() if config is None else config
        if not isinstance(self.config, Word2VecConfig):
            raise TypeError(f"config must be a Word2VecConfig, got {type(config).__name__}")
        self.vocab: Vocab | None = None
        self.counts: np.ndarray | None = None  # (V,) corpus count of each word
        self.keep: np.ndarray | None = None  # (V,) probability of keeping an occurrence
        self.noise: np.ndarray | None = None  # (V,) noise distribution P_n
        self.noise_prob: np.ndarray | None = None  # (V,) alias table of P_n ...
        self.noise_alias: np.ndarray | None = None  # (V,) ... for the C engine
        self.syn0: torch.Tensor | None = None  # (V, E) input vectors v_w
        self.syn1: torch.Tensor | None = None  # (V, E) output vectors u_w
        self.history: list[EpochStats] = []
        self.engine = self._resolve_engine()
        self._wv: WordVectors | None = None
        self._device_tables: tuple | None = None  # the torch engine's corpus on the device

    def _resolve_engine(self) -> str:
        cfg = self.config
        on_cpu = torch.device(cfg.device).type == "cpu"
        if cfg.engine == "c" and not _cengine.available():
            raise RuntimeError(
                "engine='c' needs a C compiler (cc, gcc or clang; or set $CC) to build "
                "rnnkit/word2vec/_sgns.c; use engine='torch' or engine='auto'"
            )
        if cfg.engine == "auto":
            return "c" if on_cpu and _cengine.available() else "torch"
        return cfg.engine

    # -- vocabulary ----------------------------------------------------------------------------
    def build_vocab(self, sentences: Iterable[Sequence[str]]) -> Vocab:
        """Count words, keep those seen ``min_count`` times, set up the sampling tables and
        the initial vectors v_w ~ U(-1/E, 1/E) (gensim's; word2vec.c draws from half that
        range, which gave slightly worse analogies in our benchmark), u_w = 0."""
        cfg = self.config
        counts, n_sentences = count_words(sentences)
        if not counts:
            raise ValueError(
                f"sentences must hold at least one word, got {n_sentences} sentence(s) and "
                "no words (an empty corpus)"
            )
        vocab = Vocab.from_counts(
            counts, min_freq=cfg.min_count, max_size=cfg.max_vocab_size, specials=()
        )
        if len(vocab) == 0:
            raise ValueError(
                f"no word occurs min_count={cfg.min_count} times: the corpus has {len(counts)} "
                f"distinct words, the most frequent seen {max(counts.values())} times"
            )
        self.vocab = vocab
        freq = np.array([counts[w] for w in vocab.itos], dtype=np.int64)
        self.counts = freq
        self.keep = keep_probabilities(freq, cfg.sample)
        self.noise = noise_distribution(freq, cfg.ns_exponent)
        self.noise_prob, self.noise_alias = alias_table(self.noise)
        V, E = len(vocab), cfg.vector_size
        g = torch.Generator().manual_seed(cfg.seed)
        syn0 = (2 * torch.rand(V, E, generator=g) - 1) / E
        self.syn0 = syn0.to(cfg.device)
        self.syn1 = torch.zeros(V, E, device=cfg.device)
        self._wv = None
        self.history = []
        log.info(
            "word2vec vocabulary: %d words of %d (min_count=%d)", V, len(counts), cfg.min_count
        )
        return vocab

    # -- training ------------------------------------------------------------------------------
    def fit(self, sentences: Iterable[Sequence[str]]) -> Word2Vec:
        """:meth:`build_vocab` then :meth:`train`; returns ``self``."""
        self.build_vocab(sentences)
        self.train(sentences)
        return self

    def train(
        self, sentences: Iterable[Sequence[str]], *, epochs: int | None = None
    ) -> list[float]:
        """Train for ``epochs`` (default ``config.epochs``); returns each epoch's mean loss."""
        if self.vocab is None:
            raise RuntimeError("call build_vocab(sentences) before train(sentences)")
        cfg = self.config
        epochs = cfg.epochs if epochs is None else _check_int("epochs", epochs, lowest=1)
        corpus = encode(sentences, {w: i for i, w in enumerate(self.vocab.itos)})
        if corpus.ids.size == 0:
            raise ValueError("sentences hold no word of the vocabulary (an empty corpus)")
        run = self._train_c if self.engine == "c" else self._train_torch
        bar = _progress(cfg.progress, total=epochs * corpus.raw_words)
        losses = []
        try:
            for epoch in range(epochs):
                stats = run(corpus, epoch, epochs, bar)
                self.history.append(stats)
                losses.append(stats.loss)
                log.info("word2vec epoch %d: loss %.4f, %.0f words/s", epoch, stats.loss,
                         stats.words_per_second)  # fmt: skip
        finally:
            if bar is not None:
                bar.close()
            self._device_tables = None
        self._wv = None
        return losses

    def _alpha(self, done: int, total: int) -> float:
        cfg = self.config
        return max(cfg.min_alpha, cfg.alpha - (cfg.alpha - cfg.min_alpha) * done / total)

    def _job_seed(self, epoch: int, job: int) -> int:
        state = np.random.SeedSequence([self.config.seed, epoch, job]).generate_state(1, np.uint64)
        return int(state[0])

    def _jobs(
        self, corpus: Encoded, epoch: int, epochs: int
    ) -> list[tuple[int, int, int, float, int]]:
        """(first sentence, stop, first word, alpha, seed) of every job of an epoch."""
        N = int(corpus.ids.size)
        out = []
        for j, (s0, s1) in enumerate(job_bounds(corpus.ends, self.config.batch_words)):
            start = int(corpus.ends[s0 - 1]) if s0 else 0
            alpha = self._alpha(epoch * N + start, epochs * N)
            out.append((s0, s1, start, alpha, self._job_seed(epoch, j)))
        return out

    def _train_c(self, corpus: Encoded, epoch: int, epochs: int, bar) -> EpochStats:
        cfg = self.config
        syn0, syn1 = self.syn0.numpy(), self.syn1.numpy()  # share memory with the tensors
        jobs = self._jobs(corpus, epoch, epochs)
        scale = corpus.raw_words / corpus.ids.size  # raw words per kept word, for the bar

        def work(job: tuple[int, int, int, float, int]) -> np.ndarray:
            s0, s1, start, alpha, seed = job
            return _cengine.train_job(
                syn0, syn1, corpus.ids, corpus.ends[s0:s1], start, self.keep,
                self.noise_prob, self.noise_alias, window=cfg.window, negative=cfg.negative,
                alpha=alpha, seed=seed, want_loss=cfg.compute_loss,
            )  # fmt: skip

        total = np.zeros(4)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            for job, stats in zip(jobs, pool.map(work, jobs)):
                total += stats
                if bar is not None:
                    s0, s1, start = job[:3]
                    bar.update(round((int(corpus.ends[s1 - 1]) - start) * scale))
        seconds = time.perf_counter() - t0
        return self._epoch_stats(total, corpus, jobs, seconds)

    def _train_torch(self, corpus: Encoded, epoch: int, epochs: int, bar) -> EpochStats:
        cfg = self.config
        device = self.syn0.device
        if self._device_tables is None or self._device_tables[0] is not corpus:
            lengths = np.diff(corpus.ends, prepend=0)
            sentence = np.repeat(np.arange(corpus.ends.size), lengths)
            self._device_tables = (
                corpus,
                torch.from_numpy(corpus.ids.astype(np.int64)).to(device),
                torch.from_numpy(sentence).to(device),
                torch.from_numpy(self.keep).to(device),
                torch.from_numpy(self.noise).to(device, torch.float32),
            )
        _, ids, sentence, keep, noise = self._device_tables
        jobs = self._jobs(corpus, epoch, epochs)
        scale = corpus.raw_words / corpus.ids.size
        total = np.zeros(4)
        t0 = time.perf_counter()
        for _, s1, start, alpha, seed in jobs:
            stop = int(corpus.ends[s1 - 1])
            g = torch.Generator(device=device).manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)
            total += _torchengine.train_job(
                self.syn0, self.syn1, ids[start:stop], sentence[start:stop], keep, noise,
                window=cfg.window, negative=cfg.negative, alpha=alpha, generator=g,
                minibatch=cfg.minibatch, want_loss=cfg.compute_loss,
            )  # fmt: skip
            if bar is not None:
                bar.update(round((stop - start) * scale))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        return self._epoch_stats(total, corpus, jobs, seconds)

    def _epoch_stats(
        self, total: np.ndarray, corpus: Encoded, jobs: list, seconds: float
    ) -> EpochStats:
        loss_sum, pairs, used, kept = total.tolist()
        return EpochStats(
            epoch=len(self.history),
            loss=loss_sum / pairs if pairs and self.config.compute_loss else math.nan,
            pairs=int(pairs),
            noise_words=int(used),
            raw_words=corpus.raw_words,
            kept_words=int(kept),
            alpha=jobs[-1][3],
            seconds=seconds,
        )

    # -- queries -------------------------------------------------------------------------------
    @property
    def wv(self) -> WordVectors:
        """The input vectors v_w, one row per vocabulary word (most frequent first)."""
        if self.vocab is None:
            raise RuntimeError("the model has no vocabulary yet: call fit(sentences)")
        if self._wv is None:
            self._wv = WordVectors(self.vocab.itos, self.syn0.detach().cpu().numpy().copy())
        return self._wv

    def similarity(self, a: str, b: str) -> float:
        return queries.similarity(self.wv, a, b)

    def most_similar(
        self,
        positive: str | Sequence[str] = (),
        negative: str | Sequence[str] = (),
        *,
        topn: int = 10,
        restrict_vocab: int | None = None,
    ) -> list[tuple[str, float]]:
        return queries.most_similar(
            self.wv, positive, negative, topn=topn, restrict_vocab=restrict_vocab
        )

    def analogy(self, a: str, b: str, c: str, *, topn: int = 1) -> list[tuple[str, float]]:
        return queries.analogy(self.wv, a, b, c, topn=topn)

    def bias_projection(
        self, words: Sequence[str], pairs: Sequence[tuple[str, str]] = (("he", "she"),)
    ) -> dict[str, float]:
        return queries.bias_projection(self.wv, words, pairs)

    def evaluate_analogies(self, path=None, *, restrict_vocab: int = 300_000) -> dict:
        return evaluate.evaluate_analogies(self.wv, path, restrict_vocab=restrict_vocab)

    def evaluate_word_pairs(self, path=None, *, restrict_vocab: int = 300_000) -> dict:
        return evaluate.evaluate_word_pairs(self.wv, path, restrict_vocab=restrict_vocab)

    def __repr__(self) -> str:
        size = "untrained" if self.vocab is None else f"V={len(self.vocab)}"
        return f"Word2Vec({size}, engine={self.engine!r}, {asdict(self.config)})"


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="word", unit_scale=True, desc="word2vec")


def _check_int(name: str, value: object, *, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < lowest:
        raise ValueError(f"{name} must be >= {lowest}, got {value}")
    return int(value)
