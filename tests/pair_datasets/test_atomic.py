"""Atomic writes: content, file mode under the umask, and failures that leave the old file alone."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from pair_datasets.atomic import atomic_save, atomic_write, atomic_write_bytes, atomic_write_text

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@pytest.fixture
def umask():
    """`os.umask` for one test; the previous umask is restored afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_bytes_text_and_stream(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01\xff")
    atomic_write_text(tmp_path / "b.txt", "grüße\n")
    with atomic_write(tmp_path / "c.txt", "w") as out:
        out.write("one\n")
        out.write("two\n")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01\xff"
    assert (tmp_path / "b.txt").read_bytes() == "grüße\n".encode()
    assert (tmp_path / "c.txt").read_text(encoding="utf-8") == "one\ntwo\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.txt"]


def test_replaces_existing_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_save_gives_writer_a_temp_path_with_the_suffix(tmp_path):
    seen = []

    def writer(tmp):
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.exists()
        tmp.write_bytes(b"png bytes")

    result = atomic_save(tmp_path / "sheet.png", writer)
    assert result == tmp_path / "sheet.png"
    assert result.read_bytes() == b"png bytes"
    assert not seen[0].exists()
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]


@posix_only
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_mode_follows_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_save(tmp_path / "b.bin", lambda tmp: tmp.write_bytes(b"y"))
    with atomic_write(tmp_path / "c.txt", "w") as out:
        out.write("z")
    assert [_mode(tmp_path / name) for name in ("a.bin", "b.bin", "c.txt")] == [expected] * 3


@posix_only
def test_save_restores_the_mode_when_the_writer_replaces_the_file(tmp_path, umask):
    umask(0o022)

    def replacing_writer(tmp):  # as safetensors' save_file does: a new 0600 file in place of ours
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"weights")
        os.close(fd)

    atomic_save(tmp_path / "w.safetensors", replacing_writer)
    assert (tmp_path / "w.safetensors").read_bytes() == b"weights"
    assert _mode(tmp_path / "w.safetensors") == 0o644


@posix_only
def test_safetensors_output_follows_umask(tmp_path, umask):
    np = pytest.importorskip("numpy")
    from safetensors.numpy import load_file, save_file

    umask(0o022)
    target = tmp_path / "latents.safetensors"
    atomic_save(target, lambda tmp: save_file({"x": np.arange(3, dtype=np.float32)}, str(tmp)))
    assert load_file(str(target))["x"].tolist() == [0.0, 1.0, 2.0]
    assert _mode(target) == 0o644


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "slider.safetensors"
    target.write_bytes(b"old content")

    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as out:
            out.write(b"half written")
            raise RuntimeError("boom")

    def failing_writer(tmp):
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(target, failing_writer)

    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["slider.safetensors"]


def test_failure_without_old_file_creates_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "new.bin") as out:
            out.write(b"x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_and_bad_mode_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "missing" / "a.bin", b"x")
    with pytest.raises(ValueError, match="mode must be 'wb' or 'w'"):
        with atomic_write(tmp_path / "a.bin", "ab"):
            pass
    assert list(tmp_path.iterdir()) == []


@posix_only
def test_corpus_files_are_readable_by_others_under_umask_022(tmp_path, umask):
    from PIL import Image

    from pair_datasets import Corpus, CorpusInfo

    umask(0o022)
    corpus = Corpus.create(tmp_path / "c", CorpusInfo(name="demo", resolution=8, provenance={}))
    record = corpus.append("p0", Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8), (255, 0, 0)))
    written = [corpus.root / "corpus.json", corpus.path_of(record.before), corpus.path_of(record.after)]
    assert [_mode(path) for path in written] == [0o644] * 3
