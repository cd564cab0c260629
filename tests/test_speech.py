"""The espeak-ng datasets: held-out voices, determinism for a seed, exact labels."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from rnnkit.ctc import collapse
from rnnkit.datasets import speech
from rnnkit.datasets._deps import MissingDependencyError

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng); the speech data needs it",
)


def test_no_voice_is_shared_between_splits():
    voices = {split: {s.voice for s in speech.speakers(split)} for split in speech.SPLITS}
    variants = {split: set(speech.SPEAKER_VARIANTS[split]) for split in speech.SPLITS}
    for a, b in itertools.combinations(speech.SPLITS, 2):
        assert not voices[a] & voices[b]
        assert not variants[a] & variants[b]
    assert [len(voices[s]) for s in speech.SPLITS] == [27, 4, 8]


def test_missing_espeak_says_how_to_install(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="apt-get install espeak-ng"):
        speech.espeak_program()


def test_place_keeps_words_in_order_apart_and_inside():
    rng = np.random.default_rng(0)
    for _ in range(200):
        durations = rng.integers(1, 50, size=int(rng.integers(1, 5))).tolist()
        total = sum(durations) + 10 * len(durations) + int(rng.integers(0, 30))
        starts = speech._place(rng, durations, total, gap=10)
        ends = [s + d for s, d in zip(starts, durations)]
        assert starts[0] >= 0 and ends[-1] <= total
        assert all(s - e >= 10 for e, s in zip(ends, starts[1:]))


@needs_espeak
def test_every_voice_sounds_different_and_synthesis_is_deterministic():
    # an unknown variant would silently fall back to the plain voice: distinct audio proves
    # each variant exists
    all_speakers = [s for split in speech.SPLITS for s in speech.speakers(split)]
    speech._synthesize_all(("seven", s) for s in all_speakers)
    audio = {s.voice: speech.synthesize("seven", s).tobytes() for s in all_speakers}
    assert len(set(audio.values())) == len(all_speakers)
    first = speech.speakers("test")[0]
    speech._synthesize_cached.cache_clear()
    assert speech.synthesize("seven", first).tobytes() == audio[first.voice]


@needs_espeak
def test_trigger_clips_deterministic_for_a_seed_and_labelled_after_each_trigger(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "a"))
    a = speech.load_trigger_clips("test", 6, seed=3)
    speech._synthesize_cached.cache_clear()
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "b"))
    b = speech.load_trigger_clips("test", 6, seed=3)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.events, b.events)
    c = speech.load_trigger_clips("test", 6, seed=4)
    assert not np.array_equal(a.features, c.features)

    width = round(250 / a.step_ms)
    for labels, events in zip(a.labels, a.events):
        expected = np.zeros_like(labels)
        for end in events[events >= 0]:
            expected[end + 1 : end + 1 + width] = 1
        np.testing.assert_array_equal(labels, expected)
    test_voices = {s.voice for s in speech.speakers("test")}
    assert set(a.speakers.tolist()) <= test_voices


@needs_espeak
def test_digit_strings_frame_labels_follow_the_transcript(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    d = speech.load_digit_strings("valid", 8, seed=0)
    for x, n, said, labels in zip(d.features, d.lengths, d.digits, d.frame_labels):
        assert 2 <= len(said) <= 5
        assert np.all(x[n:] == 0) and np.all(labels[n:] == 0)
        # the words in order; a digit said twice with no pause between reads as one run
        runs = [k for k, _ in itertools.groupby(collapse(labels[:n]))]
        assert runs == [k + 1 for k, _ in itertools.groupby(said)]
    assert set(d.speakers.tolist()) <= {s.voice for s in speech.speakers("valid")}
    again = speech.load_digit_strings("valid", 8, seed=0)  # from the cache, checksum checked
    np.testing.assert_array_equal(again.features, d.features)
    assert again.digits == d.digits
    speech._synthesize_cached.cache_clear()
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "fresh"))
    fresh = speech.load_digit_strings("valid", 8, seed=0)  # synthesised and composed again
    np.testing.assert_array_equal(fresh.features, d.features)
    np.testing.assert_array_equal(fresh.frame_labels, d.frame_labels)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="split must be one of"):
        speech.speakers("dev")
    with pytest.raises(ValueError, match="text must be a non-empty string"):
        speech.synthesize(" ", speech.speakers("train")[0])
    with pytest.raises(TypeError, match="speaker must be a Speaker"):
        speech.synthesize("one", "en-us")
