"""Speech synthesised offline with espeak-ng: trigger-word clips and spoken digit strings.

Every word is spoken by the ``espeak-ng`` program (a Debian package: ``apt-get install
espeak-ng``), read back from its WAV output, resampled from 22,050 Hz to 16 kHz and trimmed
of its leading and trailing silence, so the sample where each word starts and ends is known
exactly. Utterances are then composed from those words over background noise, which is what
makes exact frame labels possible.

Speakers. A speaker is an espeak-ng voice, accent + variant (``en-gb-scotland+m3``), with its
own speed (words per minute) and pitch drawn once from its name. The variants are split into
27 training, 4 validation and 8 test speakers (:data:`SPEAKER_VARIANTS`); no variant is used
by two splits, so test scores measure generalisation to unseen voices.

Two datasets, each a function of (split, n, seed, settings), generated once and cached as
``<cache>/speech/<name>.npz`` next to its sha256, checked on every load:

* :func:`load_trigger_clips` (many-to-many tagging, the lecture's trigger word): 4-s clips of
  coloured noise with 0-2 other words and 0-2 times the trigger word "activate"; the label of
  a step is 1 during the ``label_ms`` after a trigger word ends.
* :func:`load_digit_strings` (speech recognition with CTC): 2-5 digit words ("three one four")
  with random pauses (often none) between them, over noise; the transcript and, for the
  frame-classifier baseline, each step's label (the digit spoken there, or 0 for none).

Features are log-mel energies (:func:`rnnkit.audio.log_mel`, 25 ms windows every 10 ms) with
``stack`` consecutive frames side by side (steps of ``stack`` x 10 ms). Shapes: features
(N, T, M·stack) (padded with zeros, ``lengths`` (N,)); labels (N, T).

Item i of a split draws from ``numpy.random.SeedSequence([seed, split number, i])``, so the
first n items do not depend on how many are asked for.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..audio import log_mel, stack_frames
from ._cache import atomic_write_bytes, cache_dir, sha256_file, verify_sha256
from ._deps import MissingDependencyError, require

SAMPLE_RATE = 16_000
ESPEAK_RATE = 22_050
SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 1
HOP_MS = 10.0

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc")  # fmt: skip
#: espeak-ng voice variants per split (each a distinct voice; none shared between splits).
SPEAKER_VARIANTS = {
    "train": ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4", "klatt", "klatt2",
              "klatt3", "Alex", "Andy", "Annie", "adam", "aunty", "belinda", "benjamin",
              "david", "ed", "edward", "grandpa", "john", "linda", "max"),
    "valid": ("m7", "f5", "iven", "steph"),
    "test": ("m8", "klatt4", "Alicia", "Gene", "michel", "rob", "paul", "zac"),
}  # fmt: skip

TRIGGER = "activate"
#: Words said around the trigger: everyday words and some that sound like it.
OTHER_WORDS = ("active", "activity", "actor", "captive", "cultivate", "elevate", "vacate",
               "tomato", "weather", "coffee", "music", "window", "yellow", "morning",
               "computer", "garden", "happy", "seven", "tomorrow", "basket")  # fmt: skip
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Speaker:
    """An espeak-ng voice: ``voice`` ("accent+variant"), ``speed`` (words per minute) and
    ``pitch`` (0-99)."""

    voice: str
    speed: int
    pitch: int


def speakers(split: str) -> list[Speaker]:
    """The speakers of ``split``; speaker i has accent ``ACCENTS[i % 8]``, and speed and pitch
    drawn from a generator seeded by its variant's name (CRC-32)."""
    _check_split(split)
    out = []
    for i, variant in enumerate(SPEAKER_VARIANTS[split]):
        rng = np.random.default_rng(zlib.crc32(variant.encode()))
        speed, pitch = int(rng.integers(135, 196)), int(rng.integers(30, 71))
        out.append(Speaker(f"{ACCENTS[i % len(ACCENTS)]}+{variant}", speed, pitch))
    return out


def _check_split(split: object) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


# -- espeak-ng --------------------------------------------------------------------------------
def espeak_program() -> str:
    """The path of ``espeak-ng``; raises :class:`MissingDependencyError` saying how to install."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise MissingDependencyError(
            "the speech datasets synthesise their audio with the espeak-ng program, which is "
            "not installed (not found on PATH); install it with `apt-get install espeak-ng` "
            "(Debian/Ubuntu) or your system's package manager"
        )
    return path


@lru_cache(maxsize=1)
def espeak_version() -> str:
    """``espeak-ng --version``'s first line (part of every cache key: audio may differ
    between versions)."""
    result = subprocess.run(
        [espeak_program(), "--version"], capture_output=True, text=True, check=True
    )
    return result.stdout.strip().splitlines()[0]


def _wav_samples(data: bytes) -> np.ndarray:
    """int16 mono samples of espeak-ng's ``--stdout`` WAV (its header's sizes are placeholders
    when it streams, so the data chunk is found and read to the end)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"espeak-ng did not write a WAV file (got {data[:12]!r})")
    at = data.find(b"data", 12)
    if at < 0:
        raise ValueError("espeak-ng's WAV output has no data chunk")
    body = data[at + 8 :]
    return np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2")


def trim_silence(x: np.ndarray, *, frame: int = 160, threshold: float = 0.02) -> np.ndarray:
    """``x`` from its first to its last 10-ms frame whose RMS is >= ``threshold`` x the
    loudest frame's RMS (the whole of ``x`` if it is silent)."""
    n = len(x) // frame
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms >= threshold * rms.max()) if rms.max() > 0 else np.array([], int)
    if loud.size == 0:
        return x
    return x[loud[0] * frame : min(len(x), (loud[-1] + 1) * frame)]


@lru_cache(maxsize=4096)
def _synthesize_cached(text: str, voice: str, speed: int, pitch: int) -> bytes:
    cmd = [espeak_program(), "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
    result = subprocess.run(cmd, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed with exit code {result.returncode}: "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    signal = require("scipy.signal", package="scipy", needed_for="the speech datasets")
    x = _wav_samples(result.stdout).astype(np.float64) / 32768.0
    x = signal.resample_poly(x, 320, 441)  # 22,050 Hz -> 16,000 Hz (320/441 = 16000/22050)
    return trim_silence(x).astype(np.float32).tobytes()


def synthesize(text: str, speaker: Speaker) -> np.ndarray:
    """``text`` spoken by ``speaker``: (S,) float32 at 16 kHz, silence trimmed, peak as espeak
    made it (cached in memory per text and speaker)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    if not isinstance(speaker, Speaker):
        raise TypeError(f"speaker must be a Speaker, got {type(speaker).__name__}")
    raw = _synthesize_cached(text, speaker.voice, speaker.speed, speaker.pitch)
    return np.frombuffer(raw, dtype=np.float32)


def _synthesize_all(pairs: Iterable[tuple[str, Speaker]], workers: int = 4) -> None:
    """Synthesise every (text, speaker) pair into the memory cache, a few at a time."""
    espeak_program()
    todo = sorted(set(pairs), key=lambda p: (p[1].voice, p[0]))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda p: synthesize(*p), todo))


# -- composing utterances ---------------------------------------------------------------------
def background_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) float32 noise: a mix of white, pink (1/f power) and brown (1/f²) noise, and
    sometimes a mains hum, each at a random level; RMS drawn from [0.002, 0.02] (the words
    have an RMS of about 0.05-0.12 before their random gain of 0.3-1)."""
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.maximum(np.arange(n // 2 + 1), 1.0)
    mix = rng.dirichlet(np.ones(3))
    shape = mix[0] + mix[1] / np.sqrt(f / f[-1]) + mix[2] / (f / f[-1])
    noise = np.fft.irfft(spectrum * shape, n=n)
    if rng.random() < 0.3:
        t = np.arange(n) / SAMPLE_RATE
        mains = rng.choice([50.0, 60.0])
        noise += 0.5 * noise.std() * sum(np.sin(2 * np.pi * k * mains * t) / k for k in (1, 2, 3))
    noise *= rng.uniform(0.002, 0.02) / max(noise.std(), 1e-12)
    return noise.astype(np.float32)


def _place(rng: np.random.Generator, durations: list[int], total: int, gap: int) -> list[int]:
    """Random start samples for words of ``durations`` in ``total`` samples, in order and at
    least ``gap`` apart: the free space is cut at sorted uniform points c_0 <= c_1 <= ..., and
    word k starts at c_k + (the words and gaps before it)."""
    free = total - sum(durations) - gap * (len(durations) - 1)
    if free < 0:
        raise ValueError(f"{len(durations)} words of {sum(durations)} samples do not fit")
    cuts = np.sort(rng.integers(0, free + 1, size=len(durations)))
    before = np.concatenate([[0], np.cumsum(durations)[:-1]]) + gap * np.arange(len(durations))
    return [int(c + b) for c, b in zip(cuts, before)]


def _features(audio: np.ndarray, n_mels: int, stack: int) -> np.ndarray:
    return stack_frames(log_mel(audio, SAMPLE_RATE, n_mels=n_mels, hop_ms=HOP_MS), stack)


def _step_of(sample: int, stack: int) -> int:
    """The step whose hop-aligned span holds ``sample``."""
    return int(sample // (SAMPLE_RATE * HOP_MS / 1000 * stack))


# -- the cache --------------------------------------------------------------------------------
def _cached(
    name: str, settings: dict, make: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays ``make()`` returns, computed once per ``settings`` and then read from the
    cache (the file's sha256 checked)."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir("speech") / f"{name}-{settings['split']}-n{settings['n']}-{key}.npz"
    digest = path.with_suffix(".sha256")
    if path.exists() and digest.exists():
        verify_sha256(path, digest.read_text().strip())
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    arrays = make()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, settings=json.dumps(settings), **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_bytes(digest, sha256_file(path).encode())
    return arrays


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return n


def _pad(items: list[np.ndarray], dtype: type) -> np.ndarray:
    T = max(len(x) for x in items)
    out = np.zeros((len(items), T, *items[0].shape[1:]), dtype=dtype)
    for i, x in enumerate(items):
        out[i, : len(x)] = x
    return out


# -- trigger word -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TriggerClips:
    """``features`` (N, T, M·stack) float32; ``labels`` (N, T) uint8; ``events`` (N, 2) the step
    at which each trigger word ends (-1: none); ``speakers`` (N,) the voice of each clip; the
    step length ``step_ms``."""

    features: np.ndarray
    labels: np.ndarray
    events: np.ndarray
    speakers: np.ndarray
    step_ms: float


def load_trigger_clips(
    split: str,
    n: int,
    *,
    seed: int = 0,
    clip_s: float = 4.0,
    label_ms: float = 250.0,
    n_mels: int = 40,
    stack: int = 2,
) -> TriggerClips:
    """The first ``n`` trigger-word clips of ``split`` (module docstring)."""
    _check_split(split)
    _check_n(n)
    settings = {"format": FORMAT_VERSION, "espeak": espeak_version(), "split": split, "n": n,
                "seed": seed, "clip_s": clip_s, "n_mels": n_mels, "stack": stack}  # fmt: skip

    def make() -> dict[str, np.ndarray]:
        total = round(clip_s * SAMPLE_RATE)
        voices = speakers(split)
        plans = []
        for i in range(n):
            rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), i]))
            speaker = voices[int(rng.integers(len(voices)))]
            words = [str(w) for w in rng.choice(OTHER_WORDS, size=int(rng.integers(0, 3)))]
            words += [TRIGGER] * int(rng.choice(3, p=[0.4, 0.45, 0.15]))
            plans.append((rng, speaker, list(rng.permutation(words))))
        _synthesize_all((w, s) for _, s, words in plans for w in words)
        feats, ends, names = [], [], []
        for rng, speaker, words in plans:
            audio = background_noise(rng, total)
            gap = SAMPLE_RATE // 20
            while sum(len(synthesize(w, speaker)) + gap for w in words) > total:
                words.remove(
                    next(w for w in words if w != TRIGGER) if len(set(words)) > 1 else words[-1]
                )  # a slow voice: drop a word, others first
            waves = [synthesize(w, speaker) * rng.uniform(0.3, 1.0) for w in words]
            starts = _place(rng, [len(w) for w in waves], total, gap=gap)
            trig = []
            for word, wave, start in zip(words, waves, starts):
                audio[start : start + len(wave)] += wave
                if word == TRIGGER:
                    trig.append(_step_of(start + len(wave) - 1, stack))
            feats.append(_features(audio, n_mels, stack))
            ends.append(trig + [-1] * (2 - len(trig)))
            names.append(speaker.voice)
        return {"features": np.stack(feats), "events": np.array(ends, dtype=np.int64),
                "speakers": np.array(names)}  # fmt: skip

    arrays = _cached("trigger", settings, make)
    step_ms = HOP_MS * stack
    width = max(1, round(label_ms / step_ms))
    T = arrays["features"].shape[1]
    labels = np.zeros((n, T), dtype=np.uint8)
    for i, row in enumerate(arrays["events"]):
        for end in row[row >= 0]:
            labels[i, end + 1 : end + 1 + width] = 1
    return TriggerClips(arrays["features"], labels, arrays["events"], arrays["speakers"], step_ms)


# -- digit strings ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DigitStrings:
    """``features`` (N, T, M·stack) float32 padded with zeros, ``lengths`` (N,); ``digits`` N
    lists of the digits said (0-9); ``frame_labels`` (N, T) int64: 1 + the digit spoken at
    each step, 0 where none is; ``speakers`` (N,); the step length ``step_ms``."""

    features: np.ndarray
    lengths: np.ndarray
    digits: list[list[int]]
    frame_labels: np.ndarray
    speakers: np.ndarray
    step_ms: float


def load_digit_strings(
    split: str,
    n: int,
    *,
    seed: int = 0,
    min_digits: int = 2,
    max_digits: int = 5,
    n_mels: int = 40,
    stack: int = 3,
) -> DigitStrings:
    """The first ``n`` spoken digit strings of ``split`` (module docstring)."""
    _check_split(split)
    _check_n(n)
    if not 1 <= min_digits <= max_digits:
        raise ValueError(
            f"need 1 <= min_digits <= max_digits, got min_digits={min_digits}, "
            f"max_digits={max_digits}"
        )
    settings = {"format": FORMAT_VERSION, "espeak": espeak_version(), "split": split, "n": n,
                "seed": seed, "min_digits": min_digits, "max_digits": max_digits,
                "n_mels": n_mels, "stack": stack}  # fmt: skip

    def make() -> dict[str, np.ndarray]:
        voices = speakers(split)
        plans = []
        for i in range(n):
            rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), i]))
            speaker = voices[int(rng.integers(len(voices)))]
            said = rng.integers(0, 10, size=int(rng.integers(min_digits, max_digits + 1)))
            plans.append((rng, speaker, [int(d) for d in said]))
        _synthesize_all((DIGITS[d], s) for _, s, said in plans for d in said)
        feats, labels, names = [], [], []
        for rng, speaker, said in plans:
            waves = [synthesize(DIGITS[d], speaker) * rng.uniform(0.3, 1.0) for d in said]
            # pauses: none a third of the time, else up to 200 ms; 100-300 ms at either end
            pauses = [0 if rng.random() < 1 / 3 else int(rng.integers(0, 3200)) for _ in said]
            pauses[0] = int(rng.integers(1600, 4800))
            tail = int(rng.integers(1600, 4800))
            total = sum(pauses) + sum(len(w) for w in waves) + tail
            audio = background_noise(rng, total)
            spans, at = [], 0
            for wave, pause in zip(waves, pauses):
                at += pause
                audio[at : at + len(wave)] += wave
                spans.append((at, at + len(wave)))
                at += len(wave)
            x = _features(audio, n_mels, stack)
            centres = (np.arange(len(x)) + 0.5) * SAMPLE_RATE * HOP_MS / 1000 * stack
            y = np.zeros(len(x), dtype=np.int64)
            for d, (lo, hi) in zip(said, spans):
                y[(centres >= lo) & (centres < hi)] = d + 1
            feats.append(x)
            labels.append(y)
            names.append(speaker.voice)
        lengths = np.array([len(x) for x in feats], dtype=np.int64)
        counts = np.array([len(p[2]) for p in plans], dtype=np.int64)
        return {"features": _pad(feats, np.float32), "frame_labels": _pad(labels, np.int64),
                "lengths": lengths, "digits": np.concatenate([p[2] for p in plans]),
                "counts": counts, "speakers": np.array(names)}  # fmt: skip

    a = _cached("digits", settings, make)
    bounds = np.concatenate([[0], np.cumsum(a["counts"])])
    digits = [a["digits"][bounds[i] : bounds[i + 1]].tolist() for i in range(n)]
    return DigitStrings(
        a["features"], a["lengths"], digits, a["frame_labels"], a["speakers"], HOP_MS * stack
    )
