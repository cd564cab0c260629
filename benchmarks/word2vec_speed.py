"""rnnkit's word2vec against gensim's ``Word2Vec(sg=1)``: words/second and vector quality.

Corpus: the Wikipedia sample shipped in gensim's wheel
(``enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``, markup removed by
gensim's ``filter_wiki``) plus Shakespeare's complete works (``rnnkit.datasets``), tokenised
once by ``rnnkit.text.word_tokens(lower=True, punctuation=False)``, one sentence per line.
Both libraries get the same token lists and the same hyper-parameters.

Timing covers ``train()`` only (each library's vocabulary is built beforehand; rnnkit's
``train`` includes turning the tokens into ids). words/second = raw tokens x epochs / seconds.
The runs alternate between the libraries so that load from other processes hits both; run r
seeds both libraries with ``seed + r``.
Quality: analogy accuracy on ``questions-words.txt`` restricted to the trained vocabulary
(rnnkit's evaluator, which follows gensim's rules, applied to both sets of vectors; gensim's
own evaluator is printed for gensim as a cross-check), WordSim-353 and SimLex-999 Spearman.

    .venv/bin/python benchmarks/word2vec_speed.py [--repeats 3] [--workers 2] [--epochs 5]
"""

from __future__ import annotations

import argparse
import bz2
import datetime
import os
import platform
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")

import gensim  # noqa: E402  (a benchmark dependency only)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gensim.corpora.wikicorpus import extract_pages, filter_wiki  # noqa: E402
from gensim.models import Word2Vec as GensimWord2Vec  # noqa: E402
from machine import cpu_name  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit.datasets import load_shakespeare  # noqa: E402
from rnnkit.embeddings import WordVectors  # noqa: E402
from rnnkit.text import word_tokens  # noqa: E402
from rnnkit.word2vec import (  # noqa: E402
    Word2Vec,
    Word2VecConfig,
    evaluate_analogies,
    evaluate_word_pairs,
    gensim_test_file,
)

WIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def load_corpus() -> list[list[str]]:
    sentences = []
    with bz2.open(gensim_test_file(WIKI)) as f:
        for _title, text, _pageid in extract_pages(f):
            for line in filter_wiki(text).splitlines():
                tokens = word_tokens(line, lower=True, punctuation=False)
                if tokens:
                    sentences.append(tokens)
    for text in load_shakespeare().values():
        for line in text.splitlines():
            tokens = word_tokens(line, lower=True, punctuation=False)
            if tokens:
                sentences.append(tokens)
    return sentences


def run_gensim(sentences, raw_words, args, seed):
    model = GensimWord2Vec(
        sg=1, vector_size=args.vector_size, window=args.window, min_count=args.min_count,
        sample=args.sample, negative=args.negative, alpha=0.025, min_alpha=0.0001,
        epochs=args.epochs, workers=args.workers, seed=seed,
    )  # fmt: skip
    model.build_vocab(sentences)
    t0 = time.perf_counter()
    model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
    seconds = time.perf_counter() - t0
    wv = WordVectors(model.wv.index_to_key, model.wv.vectors)
    return raw_words * args.epochs / seconds, wv, model


def run_rnnkit(sentences, raw_words, args, seed, compute_loss):
    config = Word2VecConfig(
        vector_size=args.vector_size, window=args.window, min_count=args.min_count,
        sample=args.sample, negative=args.negative, alpha=0.025, min_alpha=0.0001,
        epochs=args.epochs, workers=args.workers, seed=seed, compute_loss=compute_loss,
    )  # fmt: skip
    model = Word2Vec(config)
    model.build_vocab(sentences)
    t0 = time.perf_counter()
    model.train(sentences)
    seconds = time.perf_counter() - t0
    return raw_words * args.epochs / seconds, model.wv, model


def quality(wv: WordVectors) -> dict:
    analogies = evaluate_analogies(wv, restrict_vocab=len(wv))
    ws = evaluate_word_pairs(wv, gensim_test_file("wordsim353.tsv"))
    sl = evaluate_word_pairs(wv, gensim_test_file("simlex999.txt"))
    return {
        "analogy": analogies["accuracy"],
        "answered": analogies["answered"],
        "wordsim": ws["spearman"],
        "simlex": sl["spearman"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--vector-size", type=int, default=100)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--sample", type=float, default=1e-3)
    p.add_argument("--negative", type=int, default=5)
    p.add_argument("--seed", type=int, default=1, help="run r uses seed + r")
    args = p.parse_args()
    torch.set_num_threads(args.workers)

    t0 = time.perf_counter()
    sentences = load_corpus()
    raw_words = sum(map(len, sentences))
    print(f"corpus: {len(sentences)} sentences, {raw_words} tokens "
          f"(read and tokenised in {time.perf_counter() - t0:.1f} s)")  # fmt: skip

    speeds: dict[str, list[float]] = {"gensim": [], "rnnkit": [], "rnnkit+loss": []}
    scores: dict[str, list[dict]] = {k: [] for k in speeds}
    for r in range(args.repeats):
        for name in speeds:
            if name == "gensim":
                wps, wv, model = run_gensim(sentences, raw_words, args, args.seed + r)
                if r == 0:
                    own = model.wv.evaluate_word_analogies(
                        str(gensim_test_file("questions-words.txt")), restrict_vocab=len(wv)
                    )[0]
                    print(f"  gensim's own evaluator: analogy accuracy {own:.4f}")
            else:
                wps, wv, model = run_rnnkit(
                    sentences, raw_words, args, args.seed + r, name == "rnnkit+loss"
                )
                if name == "rnnkit+loss":
                    print("  rnnkit loss per epoch:", [round(h.loss, 4) for h in model.history])
            q = quality(wv)
            speeds[name].append(wps)
            scores[name].append(q)
            print(f"run {r} {name:12s} {wps:10.0f} words/s  V={len(wv)}  analogy "
                  f"{q['analogy']:.4f} ({q['answered']} answered)  wordsim {q['wordsim']:.3f}  "
                  f"simlex {q['simlex']:.3f}")  # fmt: skip

    g_med = statistics.median(speeds["gensim"])
    print()
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs; workers={args.workers}; "
          f"{datetime.date.today()}; python {platform.python_version()}, torch "
          f"{torch.__version__}, numpy {np.__version__}, gensim {gensim.__version__}, rnnkit "
          f"{rnnkit.__version__}")  # fmt: skip
    print(f"corpus: {raw_words} tokens, {len(sentences)} sentences; E={args.vector_size}, "
          f"window={args.window}, negative={args.negative}, sample={args.sample}, "
          f"min_count={args.min_count}, epochs={args.epochs}, {args.repeats} runs")  # fmt: skip
    print()
    print("| engine | words/s (median) | words/s (best) | vs gensim (median) | analogy accuracy "
          "| WordSim-353 ρ | SimLex-999 ρ |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in speeds:
        med, best = statistics.median(speeds[name]), max(speeds[name])
        row = [f"{med:,.0f}", f"{best:,.0f}", f"{med / g_med:.2f}x"]
        for key, digits in (("analogy", 4), ("wordsim", 3), ("simlex", 3)):
            values = [s[key] for s in scores[name]]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            row.append(f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}")
        print(f"| {name} | " + " | ".join(row) + " |")
    print("(quality: mean ± standard deviation over the runs)")


if __name__ == "__main__":
    main()
