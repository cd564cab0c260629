"""The compiled library's source: ``_loops.cpp`` and the parts it includes, all of which key the
cached build, so that a change in any part builds the library anew."""

from __future__ import annotations

import re
import shutil

from rnnkit.engine import native


def test_every_part_is_included_and_keys_the_build():
    parts = native._parts(native.SOURCE)
    assert parts[0] == native.SOURCE
    text = native.SOURCE.read_text()
    included = re.findall(r'^#include "([^"]+)"', text, flags=re.M)
    # each part once, nothing included from beside the source that the key would miss
    assert sorted(included) == sorted(p.name for p in parts[1:])
    assert len(parts) > 2


def test_a_change_in_any_part_changes_the_build_key(tmp_path):
    for part in native._parts(native.SOURCE):
        shutil.copy(part, tmp_path / part.name)
    source = tmp_path / native.SOURCE.name
    key = native.build_key(source, "c++")
    assert native.build_key(source, "c++") == key
    assert native.build_key(source, "g++") != key  # the compiler keys it too
    (tmp_path / "notes.txt").write_text("not a part")
    assert native.build_key(source, "c++") == key
    for part in native._parts(source):
        kept = part.read_bytes()
        part.write_bytes(kept + b"\n// changed\n")
        assert native.build_key(source, "c++") != key, part.name
        part.write_bytes(kept)
    assert native.build_key(source, "c++") == key
