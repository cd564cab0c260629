"""Captioned digit images: exact captions, images rebuilt from their parts, held-out digit
images, the image encoder's layout, and end-to-end runs with and without attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="the captions need scikit-learn's digits")

from rnnkit.datasets.captions import caption, load_captioned_digits  # noqa: E402
from rnnkit.datasets.digits import load_digits_sequences  # noqa: E402


def test_captions_read_the_grid_in_order():
    # cells: row * 3 + column
    assert caption([3, 7, 1], [0, 2, 4]) == "a three left of a seven above a one"
    assert caption([8, 0], [8, 1]) == "a zero above an eight"  # given in any order
    assert caption([5, 6, 2, 9], [6, 7, 3, 5]) == (
        "a two left of a nine above a five left of a six"
    )
    with pytest.raises(ValueError, match="cells must be distinct ints"):
        caption([1, 2], [4, 4])
    with pytest.raises(ValueError, match="digits and cells must be equally long"):
        caption([1], [0, 1])


def test_images_are_their_digits_in_their_cells_and_deterministic():
    pool, labels = load_digits_sequences("test")
    data = load_captioned_digits("test", 40, seed=5)
    for image, digits, cells, sources, text in zip(
        data.images, data.digits, data.cells, data.sources, data.captions
    ):
        k = int((digits >= 0).sum())
        assert 2 <= k <= 4
        assert text == caption(digits[:k].tolist(), cells[:k].tolist())
        covered = np.zeros_like(image, dtype=bool)
        for d, c, src in zip(digits[:k], cells[:k], sources[:k]):
            assert labels[src] == d
            r, col = divmod(int(c), 3)
            block = image[12 * r : 12 * r + 12, 12 * col : 12 * col + 12]
            # the digit image sits, whole and unchanged, somewhere inside its cell
            hits = [(i, j) for i in range(5) for j in range(5)
                    if np.array_equal(block[i : i + 8, j : j + 8], pool[src])]  # fmt: skip
            assert hits
            covered[12 * r : 12 * r + 12, 12 * col : 12 * col + 12] = True
        assert not image[~covered].any()  # nothing outside the chosen cells
    again = load_captioned_digits("test", 40, seed=5)
    np.testing.assert_array_equal(again.images, data.images)
    assert again.captions == data.captions
    assert load_captioned_digits("test", 40, seed=6).captions != data.captions
    assert load_captioned_digits("test", 10, seed=5).captions == data.captions[:10]


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="split must be one of"):
        load_captioned_digits("dev", 3)
    with pytest.raises(ValueError, match="canvas must be an int >= 24"):
        load_captioned_digits("train", 3, canvas=20)
    with pytest.raises(ValueError, match="need 1 <= min_digits <= max_digits <= 4"):
        load_captioned_digits("train", 3, max_digits=5)


def test_image_encoder_cells_are_the_feature_map_in_reading_order():
    pytest.importorskip("lightning")
    from rnnkit.tasks.captioning import ImageEncoder, ImageEncoderConfig

    torch.manual_seed(0)
    enc = ImageEncoder(ImageEncoderConfig(channels=4, hidden_size=5), 36).double()
    x = torch.rand(2, 36, 36, dtype=torch.float64)
    out = enc(x)  # (B, 81, H)
    axis = torch.linspace(-1, 1, 36, dtype=torch.float64)
    coords = torch.stack(torch.meshgrid(axis, axis, indexing="ij"))  # (2, S, S): row, column
    maps = enc.net(torch.cat([x.unsqueeze(1), coords.expand(2, 2, 36, 36)], dim=1))
    assert maps.shape == (2, 5, 9, 9)
    for r, c in ((0, 0), (0, 8), (4, 2), (8, 8)):
        torch.testing.assert_close(out[:, 9 * r + c], maps[:, :, r, c], rtol=0, atol=0)
    with pytest.raises(ValueError, match="lengths must be None"):
        enc(x, torch.tensor([36, 36]))
    with pytest.raises(ValueError, match="x must be square images"):
        enc(torch.zeros(1, 36, 30))


@pytest.mark.parametrize("attention", ["additive", "none"])
def test_captioning_end_to_end(tmp_path, attention):
    pytest.importorskip("lightning")
    pytest.importorskip("sacrebleu")
    import sacrebleu

    from rnnkit.models import load_model
    from rnnkit.tasks.captioning import CaptioningTask, caption_vocab
    from rnnkit.training.run import evaluate, train

    overrides = {
        "model.attention": attention, "data.n_train": "32", "data.n_valid": "8",
        "data.n_test": "8", "trainer.max_steps": "4", "trainer.batch_size": "8",
        "trainer.val_every_n_steps": "2", "trainer.checkpoint_every_n_steps": "2",
        "trainer.progress_bar": "false", "trainer.logger": "none",
        "model.encoder.channels": "4", "model.decoder_hidden_size": "16",
    }  # fmt: skip
    run = tmp_path / "run"
    metrics = train("captioning", overrides, run_dir=run, argv=["rnnkit"], echo=False)["metrics"]
    model = load_model(run / "model")
    images = load_captioned_digits("test", 8)
    hyps, alpha = CaptioningTask().describe(model, caption_vocab(),
                                            torch.from_numpy(images.images), 1)  # fmt: skip
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [images.captions]).score)
    assert metrics["exact_match"] == np.mean([h == r for h, r in zip(hyps, images.captions)])
    assert evaluate(run, echo=False)["metrics"]["bleu"] == metrics["bleu"]
    if attention == "none":
        assert alpha is None and not (run / "attention.png").exists()
    else:  # each written word's weights over the 81 cells sum to 1
        n = len(hyps[0].split()) + 1
        torch.testing.assert_close(alpha[0, :n].sum(1), torch.ones(n), rtol=0, atol=1e-5)
        assert (run / "attention.png").is_file()
