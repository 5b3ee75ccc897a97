"""`concept-transfer demo` on the shipped toy world, shortened: the journey runs through the `transfer` recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toyworld.demo import DemoSettings, run_toy_demo, toy_assets

TINY = DemoSettings(rank_seeds=(0,), stats_samples=200, pairs=2, visual_steps=2, visual_batch=2, text_steps=2,
                    sample_steps=2, prompts=("a wide face",), grid_seeds=(0,), measure_seeds=(0, 1))  # fmt: skip


@pytest.mark.slow
def test_toy_demo_transfers_the_channel_it_finds_and_measures_both_sliders(tmp_path):
    from safetensors import safe_open

    from pair_datasets import Corpus

    assets = toy_assets()
    if assets is None:
        pytest.skip("toy world not shipped (toyworld/assets: sdxl/, toy_stylegan3, probe)")
    lines: list[str] = []
    summary = run_toy_demo(tmp_path, lines.append, assets, TINY)

    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    best = summary["channel_found"]
    assert (best["layer"], best["channel"]) == ("L3_72_64", 0)  # the toy GAN's eye channel, by construction
    # The recipe's run folder: corpus, slider and sweep of the transferred slider, named for the concept.
    eye = tmp_path / "eye-size"
    assert summary["pairs"] == {"corpus": str(eye / "corpus"), "contact_sheet": str(eye / "corpus" / "contact_sheet.png"),
                                "pairs": 4}  # fmt: skip
    assert len(Corpus.open(eye / "corpus").ids()) == 4  # 2 seeds x levels 1 and 2
    with safe_open(eye / "slider.safetensors", "pt") as f:
        metadata = f.metadata()
    assert metadata["concept_transfer.kind"] == "gan" and metadata["concept_transfer.base_model"] == "toy"
    edit = json.loads(json.loads(metadata["concept_transfer.corpus"])["provenance"])["edit"]
    assert (edit["layer"], edit["channel"]) == (best["layer"], best["channel"])
    assert summary["sliders"] == {"eye size": str(eye / "slider.safetensors"),
                                  "smile": str(tmp_path / "smile" / "slider.safetensors")}  # fmt: skip
    assert summary["grids"] == {"eye size": [str(eye / "sweep" / "grid_p00.png")],
                                "smile": [str(tmp_path / "smile" / "sweep" / "grid_p00.png")]}  # fmt: skip
    assert all(Path(grid).is_file() for grids in summary["grids"].values() for grid in grids)
    # The recipe's mining read the statistics the channel search computed: one cache entry, not two.
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert set(summary["metrics"]) == {"eye size", "smile"}
    assert {m["target"] for m in summary["metrics"].values()} == {"eye_size", "smile"}
    assert set(summary["seconds_by_stage"]) == {
        "find_channel",
        "transfer",
        "text_slider",
        "sweep_and_measure",
    }
    assert (tmp_path / "probe_vs_scale.png").stat().st_size > 0
    assert any("[1/3] mine" in line for line in lines)  # the recipe's own stages, reported by the demo
