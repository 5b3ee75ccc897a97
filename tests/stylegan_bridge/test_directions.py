"""Direction discovery (channels, PCA, SVM), the direction file format, and `concept-transfer directions`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_bridge.direction_file import (
    Direction,
    DirectionFile,
    check_generator,
    generator_summary,
    load_directions,
    save_directions,
)
from stylegan_bridge.directions import (
    box_mask,
    fit_boundary,
    labels_from_scores,
    load_callable,
    load_mask,
    parse_box,
    pca_directions,
    rank_channels,
    read_label_csv,
    svm_direction,
)
from stylegan_bridge.edits import channel_edit, render
from stylegan_bridge.style_space import compute_style_stats, ws_from_seeds
from transfer.cli import main


@pytest.fixture(scope="module")
def stats(G):
    return compute_style_stats(G, num_samples=200)


def red_mean(images: torch.Tensor) -> torch.Tensor:
    """A scoring function: mean of the red channel."""
    return images[:, 0].mean(dim=(1, 2))


def test_box_and_mask_regions(tmp_path):
    assert parse_box("0.25,0,0.5,1") == (0.25, 0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="--box"):
        parse_box("0.5,0,0.25,1")
    mask = box_mask((0.0, 0.0, 0.5, 0.25), 8)
    assert mask.sum() == 4 * 2 and mask[0, :4].all() and not mask[2:].any()
    Image.fromarray((mask.numpy() * 255).astype(np.uint8)).save(tmp_path / "m.png")
    assert torch.equal(load_mask(tmp_path / "m.png", 8), mask)
    with pytest.raises(FileNotFoundError, match="mask image not found"):
        load_mask(tmp_path / "missing.png", 8)


def test_localisation_of_a_box_is_the_inverse_of_its_complement(G, stats):
    box = box_mask((0.0, 0.0, 0.5, 1.0), 16)
    kw = dict(seeds=[0, 1], layers=[3, "L4"], batch=7, progress=False)
    left = {d.name: d for d in rank_channels(G, stats, region=box, **kw)}
    right = {d.name: d for d in rank_channels(G, stats, region=~box, **kw)}
    assert len(left) == 13 + 8 and set(left) == set(right)
    for name, d in left.items():
        assert d.score * right[name].score == pytest.approx(1.0, rel=1e-6)
        assert d.info["inside"] == pytest.approx(right[name].info["outside"])
    ranked = rank_channels(G, stats, region=box, **kw)
    assert [d.score for d in ranked] == sorted((d.score for d in ranked), reverse=True)
    assert {d.layer for d in ranked} == {"L3_16_8", "L4_16_3"}


def test_region_score_matches_a_brute_force_render(G, stats):
    box = box_mask((0.25, 0.25, 0.75, 0.75), 16)
    best = rank_channels(G, stats, seeds=[5], layers=["L2"], region=box, batch=5, progress=False)[0]
    ws = ws_from_seeds(G, [5], psi=0.7)
    diff = (
        (render(G, ws, channel_edit(G, best.layer, best.channel, stats), 5.0) - render(G, ws))
        .abs()
        .mean(1)[0]
    )
    expected = diff[box].mean() / diff[~box].mean()
    assert best.score == pytest.approx(float(expected), rel=1e-4)


def test_whole_image_region_is_refused(G, stats):
    with pytest.raises(ValueError, match="whole image"):
        rank_channels(
            G, stats, seeds=[0], layers=[4], region=torch.ones(16, 16, dtype=torch.bool), progress=False
        )
    with pytest.raises(ValueError, match="exactly one"):
        rank_channels(G, stats, seeds=[0], progress=False)


def test_scoring_function_finds_the_channel_that_moves_the_score_most(G, stats):
    seeds = [0, 1, 2]
    ranked = rank_channels(G, stats, seeds=seeds, layers=[-1], score_fn=red_mean, batch=4, progress=False)
    ws = ws_from_seeds(G, seeds, psi=0.7)
    base = red_mean(render(G, ws))
    brute = [
        float((red_mean(render(G, ws, channel_edit(G, -1, c, stats), 5.0)) - base).mean()) for c in range(8)
    ]
    best = int(np.argmax(np.abs(brute)))
    assert ranked[0].channel == best and ranked[0].layer == "L4_16_3"
    assert ranked[0].score == pytest.approx(abs(brute[best]), rel=1e-4, abs=1e-6)
    assert ranked[0].sign == (1.0 if brute[best] > 0 else -1.0)
    # The signed edit raises the score.
    edit = Direction(**{**ranked[0].summary()}).to_edit(G, stats)
    assert float((red_mean(render(G, ws, edit, 5.0)) - base).mean()) > 0


def test_pca_directions_are_orthonormal_and_sorted(G):
    found = pca_directions(G, num_samples=500, components=5)
    vectors = torch.stack([d.w for d in found])
    torch.testing.assert_close(vectors @ vectors.T, torch.eye(5), atol=1e-5, rtol=0)
    ratios = [d.score for d in found]
    assert ratios == sorted(ratios, reverse=True) and 0 < sum(ratios) <= 1 + 1e-6
    assert found[0].sigma == pytest.approx(np.sqrt(found[0].info["explained_variance"]))
    with pytest.raises(ValueError, match="--components"):
        pca_directions(G, num_samples=50, components=9)


def test_svm_recovers_a_linear_labelling_of_w(G, tmp_path):
    seeds = list(range(300))
    w = ws_from_seeds(G, seeds, psi=0.7)[:, 0].double().numpy()
    truth = np.linspace(-1, 1, 8)
    projection = w @ truth
    labels = (projection > np.median(projection)).astype(int)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("seed,label\n" + "".join(f"{s},{y}\n" for s, y in zip(seeds, labels)))
    read_seeds, read_labels = read_label_csv(csv_path)
    assert read_seeds == seeds and np.array_equal(read_labels, labels)
    direction = svm_direction(G, read_seeds, read_labels, psi=0.7)
    assert direction.info["accuracy"] > 0.9 and direction.info["n_test"] == 90
    cosine = float(direction.w.double() @ torch.from_numpy(truth / np.linalg.norm(truth)))
    assert cosine > 0.8
    _, info = fit_boundary(w, labels, classifier="logistic")
    assert info["accuracy"] > 0.9


def test_label_helpers_report_bad_input(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("0,1\n1,maybe\n")
    with pytest.raises(ValueError, match="bad.csv line 2: label must be"):
        read_label_csv(bad)
    kept, labels = labels_from_scores(np.array([5.0, 1.0, 3.0, 2.0, 4.0, 0.0]), extreme=1 / 3)
    assert sorted(kept[:2].tolist()) == [1, 5] and sorted(kept[2:].tolist()) == [0, 4]
    assert labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="at least 3 samples of each class"):
        fit_boundary(np.zeros((10, 2)), np.array([0] * 9 + [1]))


def test_direction_file_round_trip_and_errors(G, tmp_path):
    entries = [
        Direction(
            kind="channel",
            name="L2[3]",
            score=2.5,
            sign=-1.0,
            layer="L2_20_13",
            layer_index=2,
            channel=3,
            info={"inside": 1.0},
        ),
        Direction(kind="w", name="pc0", score=0.4, w=torch.arange(8.0), sigma=1.5),
        Direction(kind="style", name="mix", style={"L1_20_16": torch.ones(16)}),
    ]
    path = save_directions(
        tmp_path / "d.safetensors", DirectionFile("test", entries, {"seeds": [1]}, generator_summary(G))
    )
    data = load_directions(path)
    assert (
        data.method == "test" and data.details == {"seeds": [1]} and data.generator["layers"][0] == "L0_20_16"
    )
    assert [d.summary() for d in data.directions] == [d.summary() for d in entries]
    assert torch.equal(data.directions[1].w, torch.arange(8.0))
    assert torch.equal(data.directions[2].style["L1_20_16"], torch.ones(16))
    with pytest.raises(ValueError, match="index 3 is out of range"):
        data.pick(3, str(path))
    (tmp_path / "x.safetensors").write_bytes(b"nope")
    with pytest.raises(ValueError, match="x.safetensors: not a safetensors direction file"):
        load_directions(tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="needs field 'channel'"):
        Direction(kind="channel", name="bad", layer="L1_20_16")
    check_generator(data, G, str(path))  # fits
    short = DirectionFile("pca", [Direction(kind="w", name="pc0", w=torch.ones(5))])
    with pytest.raises(
        ValueError, match=r"d.safetensors: direction 'pc0' has 5 values, the generator's w has 8"
    ):
        check_generator(short, G, str(path))


def test_load_callable_from_module_and_file(tmp_path):
    assert load_callable("numpy:mean") is np.mean
    script = tmp_path / "scorer.py"
    script.write_text("def score(images):\n    return images.mean(dim=(1, 2, 3))\n")
    fn = load_callable(f"{script}:score")
    assert fn(torch.ones(2, 3, 4, 4)).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="no callable 'nope'"):
        load_callable("numpy:nope")
    with pytest.raises(ValueError, match="expected module:function"):
        load_callable("numpy")


def test_cli_directions_channels_pca_svm(gan_file, tmp_path, capsys):
    common = [
        "--gan",
        str(gan_file),
        "--device",
        "cpu",
        "--stats-samples",
        "100",
        "--stats-cache",
        str(tmp_path / "cache"),
    ]
    out = tmp_path / "eyes.safetensors"
    assert (
        main(
            [
                "directions",
                "channels",
                *common,
                "--box",
                "0.25,0.25,0.75,0.5",
                "--seeds",
                "0-1",
                "--layers",
                "3,4",
                "--top",
                "5",
                "--out",
                str(out),
                "--preview-rows",
                "3",
            ]
        )
        == 0
    )
    data = load_directions(out)
    assert data.method == "channels" and len(data.directions) == 5 and data.details["candidates"] == 21
    with Image.open(out.with_suffix(".png")) as preview:
        assert preview.size == (120 + 6 * 130, 14 + 3 * 130)  # 2 seeds x 3 deltas of 128 px tiles, 2 px gaps
    assert (
        main(
            [
                "directions",
                "pca",
                *common,
                "--samples",
                "200",
                "--components",
                "3",
                "--out",
                str(tmp_path / "pca.safetensors"),
            ]
        )
        == 0
    )
    assert [d.name for d in load_directions(tmp_path / "pca.safetensors").directions] == ["pc0", "pc1", "pc2"]
    scorer = tmp_path / "scorer.py"
    scorer.write_text("def score(images):\n    return images[:, 0].mean(dim=(1, 2))\n")
    assert (
        main(
            [
                "directions",
                "svm",
                *common,
                "--score",
                f"{scorer}:score",
                "--samples",
                "60",
                "--out",
                str(tmp_path / "svm.safetensors"),
            ]
        )
        == 0
    )
    assert "held-out accuracy" in capsys.readouterr().out
    assert load_directions(tmp_path / "svm.safetensors").directions[0].kind == "w"


def test_cli_directions_user_errors_exit_2(gan_file, tmp_path, capsys):
    code = main(
        [
            "directions",
            "channels",
            "--gan",
            str(gan_file),
            "--out",
            str(tmp_path / "d.safetensors"),
            "--box",
            "0,0,1,1",
            "--score",
            "numpy:mean",
        ]
    )
    assert code == 2 and "exactly one of --box, --mask or --score" in capsys.readouterr().err
    code = main(
        [
            "directions",
            "pca",
            "--gan",
            str(tmp_path / "missing.pkl"),
            "--out",
            str(tmp_path / "d.safetensors"),
        ]
    )
    assert code == 2 and "generator file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["svm", "--score", "numpy:mean", "--samples", "0"],
            "argument --samples: must be 1 or more, got '0'",
        ),
        (["svm", "--labels", "x.csv", "--test-fraction", "1.5"], "--test-fraction must be in (0, 1)"),
        (
            ["channels", "--box", "0,0,0.5,0.5", "--batch", "0"],
            "argument --batch: must be 1 or more, got '0'",
        ),
        (["pca", "--samples", "-1"], "argument --samples: must be 1 or more, got '-1'"),
    ],
)
def test_cli_directions_bad_numbers_are_one_line(gan_file, tmp_path, capsys, argv, message):
    command, *options = argv
    full = ["directions", command, "--gan", str(gan_file), "--out", str(tmp_path / "d.safetensors"), *options]
    assert main(full) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
