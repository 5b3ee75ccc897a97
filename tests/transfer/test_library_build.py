"""`library build` on tiny models: every slider with its record, index and gallery; resume after a kill
without retraining; a failing slider recorded while the others go on; renames that survive re-builds."""

from __future__ import annotations

import json

import pytest
from library_world import (
    candidate_entries,
    generator_record,
    make_gan,
    private_stats_cache,  # noqa: F401 - an autouse fixture
    read_candidates,
    tiny_settings,
    write_candidates,
)

import transfer.library.build as build
from sliders.slider_file import load_slider
from stylegan_bridge.direction_file import file_sha256
from transfer.library.index import load_index, rename

FAST = {"calibration_scales": (-2.0, 2.0), "calibration_seeds": (0, 1)}


@pytest.fixture
def world(tmp_path):
    """The tiny generator and two candidates: a style channel and a w direction."""
    gan = make_gan(tmp_path / "gan.safetensors")
    return gan, write_candidates(tmp_path / "cand", gan, candidate_entries(gan, 2))


def _build(world, model, root, **changes):
    gan, candidates = world
    settings = tiny_settings(gan, model, **{**FAST, **changes})
    return build.build_library(
        settings, read_candidates(candidates), root, generator_record(gan), say=lambda _: None
    )


def _spy_training(monkeypatch) -> list[list[str]]:
    trained: list[list[str]] = []
    original = build.train_together

    def spy(holder, plans):
        trained.append([p.out.name for p in plans])
        return original(holder, plans)

    monkeypatch.setattr(build, "train_together", spy)
    return trained


def test_build_writes_every_slider_its_record_and_the_gallery(world, tiny_sdxl_path, tmp_path, monkeypatch):
    root = tmp_path / "lib"
    index = _build(world, tiny_sdxl_path, root)
    ids = [c["name"] for c in candidate_entries(world[0], 2)]
    assert [s["id"] for s in index["sliders"]] == ids and index["counts"] == {
        "done": 2,
        "failed": 0,
        "pending": 0,
    }
    assert json.loads((root / "index.json").read_text()) == index
    assert json.loads((root / "build.json").read_text())["generator"]["sha256"] == file_sha256(world[0])
    for slider in index["sliders"]:
        assert slider["status"] == "done" and slider["reason"] is None
        file = load_slider(root / slider["file"])
        assert file.kind == "gan" and file.calibration is not None  # calibrated in place
        assert slider["calibration"]["raw_at_1"] == pytest.approx(file.calibration.to_raw(1.0))
        assert slider["provenance"]["generator_sha256"] == file_sha256(world[0])
        assert slider["provenance"]["levels"] == [1.0, 2.0] and slider["provenance"]["delta"] == 1.0
        assert len(slider["previews"]) == 2 and all((root / p).is_file() for p in slider["previews"])
        assert (root / slider["pairs_sheet"]).is_file()
        assert set(slider["seconds"]) == {"mine", "train", "calibrate", "preview"}
    channel, direction = index["sliders"][0]["provenance"], index["sliders"][1]["provenance"]
    assert channel["kind"] == "channel" and channel["channel"] == 3 and channel["layer"].startswith("L1_")
    assert direction == {**direction, "kind": "w_direction", "direction_file": "directions.safetensors"}

    page = (root / "index.html").read_text()
    assert all(f'id="{i}"' in page for i in ids) and "http" not in page.replace("http-equiv", "")
    assert all(f'src="{p}"' in page for s in index["sliders"] for p in s["previews"])

    # A name given by the user survives a re-build, which keeps every finished slider untouched.
    rename(root, "pca0", "soft <light>")
    files = {s["id"]: (root / s["file"]).read_bytes() for s in index["sliders"]}
    trained = _spy_training(monkeypatch)
    again = _build(world, tiny_sdxl_path, root)
    assert trained == []
    assert [s["name"] for s in again["sliders"]] == [ids[0], "soft <light>"]
    assert "soft &lt;light&gt;" in (root / "index.html").read_text()
    assert {s["id"]: (root / s["file"]).read_bytes() for s in again["sliders"]} == files


def test_killed_build_resumes_without_retraining_finished_sliders(
    world, tiny_sdxl_path, tmp_path, monkeypatch
):
    gan, _ = world
    world = (gan, write_candidates(tmp_path / "cand3", gan, candidate_entries(gan, 3)))
    root = tmp_path / "lib"
    original = build.preview

    def killed_at_second(holder, work, where):
        if work.name == "pca0":
            raise KeyboardInterrupt  # Ctrl-C during the second slider's preview: its slider is trained
        return original(holder, work, where)

    monkeypatch.setattr(build, "preview", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        _build(world, tiny_sdxl_path, root)
    index = load_index(root)  # written after every finished slider
    assert [s["status"] for s in index["sliders"]] == ["done", "pending", "pending"]
    first = root / index["sliders"][0]["file"]
    first_bytes, first_mtime = first.read_bytes(), first.stat().st_mtime_ns
    second_bytes = (root / "pca0" / "slider.safetensors").read_bytes()

    monkeypatch.setattr(build, "preview", original)
    trained = _spy_training(monkeypatch)
    index = _build(world, tiny_sdxl_path, root)
    assert trained == [[index["sliders"][2]["id"]]]  # only the slider never trained
    assert [s["status"] for s in index["sliders"]] == ["done", "done", "done"]
    assert first.read_bytes() == first_bytes and first.stat().st_mtime_ns == first_mtime
    assert (root / "pca0" / "slider.safetensors").read_bytes() == second_bytes  # calibrated once: kept


def test_a_failing_slider_is_recorded_and_the_others_go_on(world, tiny_sdxl_path, tmp_path):
    gan, _ = world
    entries = candidate_entries(gan, 2)
    entries[0] = {**entries[0], "name": "L9.c0", "layer": "L9"}  # the tiny generator has no layer 9
    candidates = write_candidates(tmp_path / "bad", gan, entries)
    index = _build((gan, candidates), tiny_sdxl_path, tmp_path / "lib")
    failed, *others = index["sliders"]
    assert failed["status"] == "failed" and failed["reason"].startswith("mine: ValueError: ")
    assert "L9" in failed["reason"] and "\n" not in failed["reason"]
    assert [s["status"] for s in others] == ["done"]
    assert index["counts"] == {"done": 1, "failed": 1, "pending": 0}
    assert "mine: ValueError" in (tmp_path / "lib" / "index.html").read_text()


def test_sliders_trained_together_are_recorded_as_one_loop(world, tiny_sdxl_path, tmp_path, monkeypatch):
    trained = _spy_training(monkeypatch)
    index = _build(world, tiny_sdxl_path, tmp_path / "lib", together=2)
    ids = [s["id"] for s in index["sliders"]]
    assert trained == [ids]
    assert index["sliders"][0]["training"]["together_with"] == [ids[1]]
    assert index["sliders"][1]["training"]["together_with"] == [ids[0]]
    assert index["counts"]["done"] == 2
    assert not list((tmp_path / "lib").rglob("*.ckpt"))  # a finished loop leaves no checkpoint to resume


def test_a_library_is_extended_only_with_its_own_settings(world, tiny_sdxl_path, tmp_path):
    root = tmp_path / "lib"
    (root).mkdir()
    build_json = {"format": "concept-transfer.library/1", "generator": generator_record(world[0]),
                  "model": str(tiny_sdxl_path), "settings": {**tiny_settings(world[0], tiny_sdxl_path, **FAST).key(), "steps": 7}}  # fmt: skip
    (root / "build.json").write_text(json.dumps(build_json))
    with pytest.raises(ValueError, match=r"built with other settings \(.*steps"):
        _build(world, tiny_sdxl_path, root)
