"""The compiled library's source: ``_loops.cpp`` and the parts it includes, all of which key the
cached build, so that a change in any part builds the library anew."""

from __future__ import annotations

import re
import shutil

from rnnkit.engine import native_build


def test_every_part_is_included_and_keys_the_build():
    parts = native_build._parts(native_build.SOURCE)
    assert parts[0] == native_build.SOURCE
    text = native_build.SOURCE.read_text()
    included = re.findall(r'^#include "([^"]+)"', text, flags=re.M)
    # each part once, nothing included from beside the source that the key would miss
    assert sorted(included) == sorted(p.name for p in parts[1:])
    assert len(parts) > 2


def test_a_change_in_any_part_changes_the_build_key(tmp_path):
    for part in native_build._parts(native_build.SOURCE):
        shutil.copy(part, tmp_path / part.name)
    source = tmp_path / native_build.SOURCE.name
    key = native_build.build_key(source, "c++")
    assert native_build.build_key(source, "c++") == key
    assert native_build.build_key(source, "g++") != key  # the compiler keys it too
    (tmp_path / "notes.txt").write_text("not a part")
    assert native_build.build_key(source, "c++") == key
    for part in native_build._parts(source):
        kept = part.read_bytes()
        part.write_bytes(kept + b"\n// changed\n")
        assert native_build.build_key(source, "c++") != key, part.name
        part.write_bytes(kept)
    assert native_build.build_key(source, "c++") == key
