"""rnnkit.engine.reuse_freed_memory: with it, a large tensor freed and allocated again reuses
the process's mapped pages (no new page faults, no fresh mmap); without it, glibc maps and
faults fresh pages every time. Each case runs in a fresh interpreter, since the setting is the
whole process's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import rnnkit.engine

# 64 MiB: above the largest threshold glibc adapts to by itself (32 MiB), so that by default
# every such block is a fresh mapping
_CHILD = """
import ctypes, json, resource, sys
import torch
import rnnkit.engine

applied = rnnkit.engine.reuse_freed_memory() if sys.argv[1] == "reuse" else None


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
n = 16 * 1024 * 1024  # float32: 64 MiB
torch.ones(n).sum()  # warm up: the first block is fresh either way
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    mapped_before = libc.mallinfo2().hblkhd  # bytes in blocks that malloc mmapped on their own
    t = torch.ones(n)  # touches every page
    mapped = libc.mallinfo2().hblkhd - mapped_before  # t's block, if it was mmapped
    del t
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
kept = libc.mallinfo2().fordblks  # free bytes malloc keeps in its heap
print(json.dumps({"applied": applied, "faults": faults, "mapped": mapped, "kept": kept}))
"""


def _child(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _glibc() -> bool:
    import ctypes

    return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "mallinfo2")


@pytest.mark.skipif(not _glibc(), reason="needs glibc 2.33 or later (mallinfo2)")
def test_freed_blocks_are_reused_instead_of_mapped_and_faulted_again():
    pages = 64 * 1024 * 1024 // 4096
    default, reuse = _child("default"), _child("reuse")
    assert reuse["applied"] is True
    # by default: every 64 MiB block is mmapped anew and each of its pages faults
    assert default["mapped"] >= 64 * 1024 * 1024
    assert all(f >= 0.9 * pages for f in default["faults"])
    # reused: the block comes from the heap, stays there when freed, and its pages are
    # already mapped when it comes back
    assert reuse["mapped"] == 0
    assert reuse["kept"] >= 64 * 1024 * 1024
    # the heap can grow a few more times while small objects settle next to the block (each
    # time one pass faults its pages afresh); then every pass reuses the same pages
    assert all(f <= 0.05 * pages for f in reuse["faults"][-6:])
    assert sum(reuse["faults"]) <= 4.1 * pages


def test_reuse_freed_memory_says_whether_it_applies(monkeypatch):
    """True on glibc (every Linux machine these tests run on), False where there is no glibc,
    without touching anything there."""
    assert rnnkit.engine.reuse_freed_memory() is _glibc()
    import rnnkit.engine.allocator as allocator

    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.reuse_freed_memory() is False


@pytest.mark.parametrize("setting,calls", [("true", 1), ("false", 0)])
def test_training_applies_it_unless_switched_off(monkeypatch, tmp_path, setting, calls):
    import rnnkit.training.run as run

    called = []
    monkeypatch.setattr(run, "reuse_freed_memory", lambda: called.append(1) or True)
    tiny = {"trainer.max_steps": "1", "trainer.val_every_n_steps": "1",
            "trainer.checkpoint_every_n_steps": "1", "trainer.progress_bar": "false",
            "trainer.logger": "none", "trainer.accelerator": "cpu",
            "model.encoder.hidden_size": "8", "trainer.reuse_freed_memory": setting}  # fmt: skip
    run.train("digits", tiny, run_dir=tmp_path / "run", echo=False)
    assert len(called) == calls
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["trainer"]["reuse_freed_memory"] is (setting == "true")
