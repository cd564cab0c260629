"""scikit-learn's digits as row sequences: the exact images, labels and split."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from rnnkit.datasets.digits import load_digits_sequences


def test_rows_are_the_images_scaled_and_the_split_partitions_them():
    bunch = load_digits()
    order = np.random.default_rng(1797).permutation(1797)
    seen = []
    for split, lo, hi in (("train", 0, 1257), ("valid", 1257, 1527), ("test", 1527, 1797)):
        x, y = load_digits_sequences(split)
        idx = order[lo:hi]
        assert x.shape == (hi - lo, 8, 8) and x.dtype == np.float32
        np.testing.assert_array_equal(x, (bunch.images[idx] / 16.0).astype(np.float32))
        np.testing.assert_array_equal(y, bunch.target[idx])
        seen += idx.tolist()
    assert sorted(seen) == list(range(1797))
