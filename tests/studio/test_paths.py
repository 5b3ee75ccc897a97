"""Typed paths stay inside the folders the studio was started with."""

from __future__ import annotations

import os

import pytest

from transfer.studio.paths import OutsideAllowedFolders, PathGuard


@pytest.fixture
def tree(tmp_path):
    allowed, secret = tmp_path / "sliders", tmp_path / "secret"
    (allowed / "sub").mkdir(parents=True)
    secret.mkdir()
    (allowed / "a.safetensors").write_bytes(b"x")
    (secret / "key.txt").write_text("secret")
    os.symlink(secret / "key.txt", allowed / "link.safetensors")
    os.symlink(secret, allowed / "door")
    return tmp_path, PathGuard.of([allowed, allowed / "sub"], base=tmp_path)


def test_paths_inside_are_resolved(tree):
    root, guard = tree
    assert guard.roots == ((root / "sliders").resolve(),)  # a folder inside another adds nothing
    assert guard.resolve("sliders/a.safetensors") == (root / "sliders/a.safetensors").resolve()
    assert guard.resolve(str(root / "sliders/sub/../a.safetensors")).name == "a.safetensors"
    assert guard.resolve(str(root / "sliders")) == (root / "sliders").resolve()


@pytest.mark.parametrize(
    "typed",
    [
        "secret/key.txt",  # a sibling folder
        "sliders/../secret/key.txt",  # `..` out of the folder
        "sliders/link.safetensors",  # a symlink inside pointing outside
        "sliders/door/key.txt",  # a symlinked folder
        "/etc/passwd",  # anywhere else
        "~",  # the home folder
        "sliders/../secret/missing.txt",  # refused before any existence test
    ],
)
def test_paths_outside_are_refused(tree, typed):
    _, guard = tree
    with pytest.raises(OutsideAllowedFolders, match="outside the folders this studio was started with"):
        guard.resolve(typed)


def test_a_missing_file_inside_is_not_found_and_bad_text_is_a_value_error(tree):
    _, guard = tree
    with pytest.raises(FileNotFoundError, match="no such file"):
        guard.resolve("sliders/missing.safetensors")
    for typed in ("", "   ", "sliders/a\x00b"):
        with pytest.raises(ValueError):
            guard.resolve(typed)
