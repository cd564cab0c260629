"""Chorale piano rolls: exact rolls of hand-written music, read-back through music21, key
analysis of known progressions, the fixed split by chorale."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("music21", reason="the chorales need music21 (pip install 'rnnkit[apps]')")

from music21 import chord, note, stream  # noqa: E402

from rnnkit.datasets import chorales as ch  # noqa: E402


def _keys(*midi: int) -> list[int]:
    return [m - ch.LOWEST_MIDI for m in midi]


def test_score_to_roll_samples_each_frame_start():
    part = stream.Part()
    part.insert(0.0, note.Note(60, quarterLength=2.0))  # frames 0, 1
    part.insert(1.0, chord.Chord([64, 67], quarterLength=1.5))  # starts 1, ends 2.5: frames 1, 2
    part.insert(2.25, note.Note(72, quarterLength=0.5))  # between frame starts: not sampled
    part.insert(3.5, note.Note(48, quarterLength=1.0))  # sounding at 4.0: frame 4
    roll = ch.score_to_roll(stream.Score([part]), step=1.0)
    expected = np.zeros((5, 88), dtype=bool)
    expected[0, _keys(60)] = True
    expected[1, _keys(60, 64, 67)] = True
    expected[2, _keys(64, 67)] = True
    expected[4, _keys(48)] = True
    np.testing.assert_array_equal(roll, expected)
    # on a grid of eighths the short note appears and the last one starts on time
    fine = ch.score_to_roll(stream.Score([part]), step=0.5)
    assert fine.shape == (9, 88)
    assert np.flatnonzero(fine[:, _keys(72)[0]]).tolist() == [5]
    assert np.flatnonzero(fine[:, _keys(48)[0]]).tolist() == [7, 8]


def test_a_roll_reads_back_identically_from_midi_and_musicxml(tmp_path):
    rng = np.random.default_rng(0)
    roll = np.zeros((24, 88), dtype=bool)
    roll[:, 30:60] = rng.random((24, 30)) < 0.12
    roll[-1, 40] = True  # a last sounding frame, so the file keeps the roll's length
    midi = ch.write_midi(roll, tmp_path / "x.mid")
    xml = ch.write_musicxml(roll, tmp_path / "x.musicxml")
    np.testing.assert_array_equal(ch.read_roll(midi), roll)
    np.testing.assert_array_equal(ch.read_roll(xml), roll)
    # a sixteenth-note grid too
    np.testing.assert_array_equal(
        ch.read_roll(ch.write_midi(roll, tmp_path / "y.mid", step=0.25), step=0.25), roll
    )


def test_real_chorales_survive_the_round_trip_and_have_their_analysed_key(tmp_path):
    for name, key in (("bach/bwv269", "G major"), ("bach/bwv153.1", "a minor")):
        roll, mode, analysed = ch.parse_chorale(name)
        assert analysed == key and ch.MODES[mode] == key.split()[1]
        assert roll.any(axis=1).all()  # chorales have no silent beat
        back = ch.read_roll(ch.write_midi(roll, tmp_path / "c.mid"))
        np.testing.assert_array_equal(back, roll)


def test_key_analysis_of_known_progressions():
    def progression(chords: list[list[int]]) -> np.ndarray:
        roll = np.zeros((4 * len(chords), 88), dtype=bool)
        for i, c in enumerate(chords):
            roll[4 * i : 4 * i + 4, _keys(*c)] = True
        return roll

    c_major = progression([[48, 64, 67, 72], [53, 65, 69, 72], [55, 62, 67, 71], [48, 64, 67, 72]])
    a_minor = progression([[45, 64, 69, 72], [50, 65, 69, 74], [52, 64, 68, 71], [45, 64, 69, 72]])
    assert str(ch.key_of(c_major)) == "C major"
    assert str(ch.key_of(a_minor)) == "a minor"


def test_split_is_by_chorale_fixed_and_disjoint():
    names = ch.chorale_names()
    assert len(names) == 347 and len(set(names)) == 347
    splits = {s: ch.split_names(s) for s in ch.SPLITS}
    assert [len(splits[s]) for s in ch.SPLITS] == [209, 69, 69]
    for a, b in itertools.combinations(ch.SPLITS, 2):
        assert not set(splits[a]) & set(splits[b])
    assert set().union(*splits.values()) == set(names)
    assert splits == {s: ch.split_names(s) for s in ch.SPLITS}


def test_left_out_duplicates_are_the_same_music_as_the_chorale_kept():
    def shape(roll: np.ndarray) -> np.ndarray:  # the roll from its lowest to highest key used
        used = np.flatnonzero(roll.any(axis=0))
        return roll[:, used[0] : used[-1] + 1]

    for dropped, kept in ch.DUPLICATES.items():
        np.testing.assert_array_equal(
            shape(ch.parse_chorale(dropped)[0]), shape(ch.parse_chorale(kept)[0])
        )
        assert dropped not in ch.chorale_names() and kept in ch.chorale_names()


def test_load_chorales_caches_what_it_parsed(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    first = ch.load_chorales("test", limit=2)
    assert first.names == ch.split_names("test")[:2]
    for name, roll, mode, key in zip(first.names, first.rolls, first.modes, first.keys):
        want = ch.parse_chorale(name)
        np.testing.assert_array_equal(roll, want[0])
        assert (mode, key) == want[1:]
    again = ch.load_chorales("test", limit=2)  # from the cache, checksum checked
    for a, b in zip(first.rolls, again.rolls):
        np.testing.assert_array_equal(a, b)
    assert list(again.modes) == list(first.modes) and again.keys == first.keys


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="split must be one of"):
        ch.split_names("dev")
    with pytest.raises(ValueError, match="step must be a number of quarter notes"):
        ch.score_to_roll(stream.Score(), step=0)
    with pytest.raises(ValueError, match=r"roll must have shape \(T, 88\)"):
        ch.roll_to_score(np.zeros((4, 12), dtype=bool))
    with pytest.raises(TypeError, match="roll must be a NumPy array"):
        ch.roll_to_score([[0] * 88])
    with pytest.raises(ValueError, match="limit must be an int >= 0"):
        ch.load_chorales("train", limit=-1)
