"""Bach's four-part chorales from music21's corpus, as piano rolls with a major/minor label.

music21 ships 371 chorales in Riemenschneider's numbering (``music21.corpus.chorales``);
21 numbers repeat another's file, which leaves 350 files, named by their corpus path
(``"bach/bwv269"``). Three files hold the same music as another (once transposed), found by
comparing every pair of piano rolls up to transposition; they are left out
(:data:`DUPLICATES`), leaving 347 chorales. Each is split once and for all by a fixed
permutation (``numpy.random.default_rng(371)``) into 209 training, 69 validation and 69 test
chorales, so no chorale, and no music, is in two splits.

Piano roll: frame t is the set of pitches sounding at time t·``step`` (in quarter notes, from
the first beat of the score): (T, 88) bool over the piano's keys, MIDI 21 (A0) to 108 (C8).
The default step of one quarter note is the grid of the JSB Chorales of Boulanger-Lewandowski
et al. (2012), the data set of Bai et al. (2018); a note shorter than the step that starts
between two frames does not appear in the roll.

Label: the mode of music21's key analysis (``score.analyze("key")``, Krumhansl-Schmuckler
with Aarden-Essen weights): 0 major, 1 minor.

Parsing a chorale takes about 0.3 s, so each (split, step) is parsed once and cached as
``<cache>/chorales/<key>.npz`` next to its sha256, which is checked on every load.

Rolls go back to music: :func:`roll_to_score` holds each pitch for as long as it stays on
(a pitch on in consecutive frames is one note), and :func:`write_midi` /
:func:`write_musicxml` write it; :func:`read_roll` reads a file back into a roll (without
silent frames at its end: a file keeps no trailing silence, or fills its last measure).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ._cache import atomic_write_bytes, cache_dir, sha256_file, verify_sha256
from ._deps import require

LOWEST_MIDI = 21
NUM_KEYS = 88
MODES = ("major", "minor")
SPLITS = ("train", "valid", "test")
SPLIT_SEED = 371
SPLIT_SIZES = (209, 69, 69)
#: Files whose piano roll equals another's up to transposition -> the file kept.
DUPLICATES = {
    "bach/bwv18.5-w": "bach/bwv18.5-l",
    "bach/bwv69.6-a": "bach/bwv69.6",
    "bach/bwv62.6": "bach/bwv274",
}
FORMAT_VERSION = 1


def _music21() -> Any:
    return require("music21", package="music21", needed_for="the chorales dataset")


def _check_step(step: object) -> float:
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step <= 4:
        raise ValueError(f"step must be a number of quarter notes in (0, 4], got {step!r}")
    return float(step)


def _check_roll(roll: object) -> np.ndarray:
    if not isinstance(roll, np.ndarray):
        raise TypeError(f"roll must be a NumPy array, got {type(roll).__name__}")
    if roll.ndim != 2 or roll.shape[1] != NUM_KEYS:
        raise ValueError(f"roll must have shape (T, {NUM_KEYS}), got {roll.shape}")
    return roll.astype(bool, copy=False)


# -- the corpus and its split -------------------------------------------------------------------
def chorale_names() -> list[str]:
    """The 347 distinct chorales' corpus paths, in Riemenschneider order (first occurrence),
    without :data:`DUPLICATES`."""
    m21 = _music21()
    names = m21.corpus.chorales.Iterator(returnType="filename")
    return [name for name in dict.fromkeys(names) if name not in DUPLICATES]


def split_names(split: str) -> list[str]:
    """The chorales of ``split``, in a fixed random order (module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    names = chorale_names()
    if len(names) != sum(SPLIT_SIZES):
        raise ValueError(
            f"music21's corpus lists {len(names)} distinct chorales, expected "
            f"{sum(SPLIT_SIZES)}: the split is defined for that corpus"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(len(names))
    lo = sum(SPLIT_SIZES[: SPLITS.index(split)])
    return [names[i] for i in order[lo : lo + SPLIT_SIZES[SPLITS.index(split)]]]


# -- scores <-> piano rolls ---------------------------------------------------------------------
def score_to_roll(score: Any, step: float = 1.0) -> np.ndarray:
    """(T, 88) bool: frame t holds the pitches sounding at time t·``step``; T = ⌈end / step⌉."""
    step = _check_step(step)
    flat = score.flatten()
    end = Fraction(flat.highestTime)
    T = int(np.ceil(end / Fraction(step)))
    roll = np.zeros((T, NUM_KEYS), dtype=bool)
    s = Fraction(step)
    for element in flat.notes:
        start = Fraction(element.offset)
        stop = start + Fraction(element.quarterLength)
        first = int(np.ceil(start / s))  # the first frame time >= start
        last = int(np.ceil(stop / s))  # frames before this one start before stop
        for pitch in element.pitches:
            key = pitch.midi - LOWEST_MIDI
            if not 0 <= key < NUM_KEYS:
                raise ValueError(f"pitch {pitch.nameWithOctave} lies outside the piano's 88 keys")
            roll[first:last, key] = True
    return roll


def roll_to_score(roll: np.ndarray, step: float = 1.0, *, bpm: float = 80.0) -> Any:
    """A music21 score of ``roll``: each run of frames where a pitch stays on is one note,
    the notes merged into chords (music21's ``chordify``, tied across chord changes), in 4/4
    at ``bpm`` quarter notes per minute."""
    m21 = _music21()
    roll = _check_roll(roll)
    step = _check_step(step)
    q = Fraction(step).limit_denominator(64)
    part = m21.stream.Part()
    part.insert(0, m21.instrument.Piano())
    part.insert(0, m21.tempo.MetronomeMark(number=bpm))
    part.insert(0, m21.meter.TimeSignature("4/4"))
    padded = np.vstack([np.zeros((1, NUM_KEYS), bool), roll, np.zeros((1, NUM_KEYS), bool)])
    change = np.diff(padded.astype(np.int8), axis=0)  # (T+1, 88): +1 note on, -1 note off
    for key in range(NUM_KEYS):
        ons, offs = np.flatnonzero(change[:, key] == 1), np.flatnonzero(change[:, key] == -1)
        for on, off in zip(ons, offs):
            note = m21.note.Note(LOWEST_MIDI + key, quarterLength=(off - on) * q)
            part.insert(on * q, note)
    score = m21.stream.Score([part])
    return score.chordify()


def _quiet(call: Any) -> Any:
    with warnings.catch_warnings():
        # music21 may warn about a score it writes or reads (missing metadata, notation it
        # has to guess); none of that changes the notes, which is all a roll keeps
        warnings.filterwarnings("ignore", module=r"music21\..*")
        return call()


def write_midi(roll: np.ndarray, path: str | os.PathLike, step: float = 1.0) -> Path:
    """Write ``roll`` as a MIDI file (via :func:`roll_to_score`); returns the path."""
    score = roll_to_score(roll, step)
    return Path(_quiet(lambda: score.write("midi", fp=str(path))))


def write_musicxml(roll: np.ndarray, path: str | os.PathLike, step: float = 1.0) -> Path:
    """Write ``roll`` as MusicXML (via :func:`roll_to_score`); returns the path."""
    score = roll_to_score(roll, step)
    return Path(_quiet(lambda: score.write("musicxml", fp=str(path))))


def read_roll(path: str | os.PathLike, step: float = 1.0) -> np.ndarray:
    """The piano roll of a MIDI or MusicXML file, parsed by music21, without the silent
    frames at its end (music21 fills the last measure with rests)."""
    m21 = _music21()
    score = _quiet(lambda: m21.converter.parse(str(path)))
    roll = score_to_roll(score, step)
    sounding = np.flatnonzero(roll.any(axis=1))
    return roll[: sounding[-1] + 1 if sounding.size else 0]


def key_of(roll: np.ndarray, step: float = 1.0) -> Any:
    """music21's key analysis (a ``music21.key.Key``) of the music in ``roll``."""
    score = roll_to_score(roll, step)
    return _quiet(lambda: score.analyze("key"))


# -- the data set --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chorales:
    """N chorales: ``names`` (corpus paths), ``rolls`` N arrays (T_i, 88) bool, ``modes`` (N,)
    int64 (0 major, 1 minor), ``keys`` (N,) the analysed key ("G major", "a minor")."""

    names: list[str]
    rolls: list[np.ndarray]
    modes: np.ndarray
    keys: list[str]


def parse_chorale(name: str, step: float = 1.0) -> tuple[np.ndarray, int, str]:
    """(roll, mode, key name) of the corpus chorale ``name``."""
    m21 = _music21()
    score = _quiet(lambda: m21.corpus.parse(name))
    key = _quiet(lambda: score.analyze("key"))
    return score_to_roll(score, step), MODES.index(key.mode), str(key)


def load_chorales(split: str, *, step: float = 1.0, limit: int = 0) -> Chorales:
    """The chorales of ``split`` (the first ``limit`` of them when ``limit`` > 0), parsed once
    and then read from the cache."""
    names = split_names(split)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be an int >= 0 (0: all), got {limit!r}")
    step = _check_step(step)
    names = names[:limit] if limit else names
    m21 = _music21()
    version = m21.__version__
    key = f"{split}-n{len(names)}-step{step:g}-music21-{version}-v{FORMAT_VERSION}"
    path = cache_dir("chorales") / f"{key}.npz"
    digest = path.with_suffix(".sha256")
    if path.exists() and digest.exists():
        verify_sha256(path, digest.read_text().strip())
        with np.load(path) as z:
            flat, lengths = np.unpackbits(z["rolls"], axis=1)[:, :NUM_KEYS], z["lengths"]
            modes, keys = z["modes"], json.loads(str(z["keys"]))
            stored = json.loads(str(z["names"]))
        if stored != names:
            raise ValueError(f"{path} holds other chorales than the {split} split: delete it")
        rolls = np.split(flat.astype(bool), np.cumsum(lengths)[:-1])
        return Chorales(names, rolls, modes, keys)
    parsed = [parse_chorale(name, step) for name in names]
    rolls = [p[0] for p in parsed]
    modes = np.array([p[1] for p in parsed], dtype=np.int64)
    keys = [p[2] for p in parsed]
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        rolls=np.packbits(np.concatenate(rolls), axis=1),
        lengths=np.array([len(r) for r in rolls], dtype=np.int64),
        modes=modes,
        keys=json.dumps(keys),
        names=json.dumps(names),
    )
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_bytes(digest, sha256_file(path).encode())
    return Chorales(names, rolls, modes, keys)
