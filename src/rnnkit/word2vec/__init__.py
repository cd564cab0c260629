"""word2vec: skip-gram with negative sampling, and the queries and benchmarks of word vectors.

>>> model = Word2Vec(Word2VecConfig(vector_size=100, epochs=5)).fit(sentences)  # doctest: +SKIP
>>> model.analogy("man", "king", "woman")  # e_king + (e_woman - e_man)         # doctest: +SKIP
"""

from .evaluate import evaluate_analogies, evaluate_word_pairs, gensim_test_file
from .model import EpochStats, Word2Vec, Word2VecConfig
from .queries import analogy, bias_direction, bias_projection, most_similar, similarity

__all__ = [
    "EpochStats",
    "Word2Vec",
    "Word2VecConfig",
    "analogy",
    "bias_direction",
    "bias_projection",
    "evaluate_analogies",
    "evaluate_word_pairs",
    "gensim_test_file",
    "most_similar",
    "similarity",
]
