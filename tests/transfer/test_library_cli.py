"""`concept-transfer library ...` from the command line: bad input is one line and exit 2; a build sharded
over two processes (torchrun, gloo on the CPU) equals the one-process build; rename and show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from library_world import (
    build_args,
    candidate_entries,
    make_gan,
    private_stats_cache,  # noqa: F401 - an autouse fixture
    write_candidates,
)
from PIL import Image

from transfer.cli import main


@pytest.fixture
def world(tmp_path):
    gan = make_gan(tmp_path / "gan.safetensors")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na car\n")
    return gan, write_candidates(tmp_path / "cand", gan, candidate_entries(gan)), prompts


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--gan": "missing.pkl"}, "missing.pkl: generator file not found"),
        ({"--top": "0"}, "--top must be >= 1, got 0"),
        ({"--together": "0"}, "--together must be >= 1, got 0"),
        ({"--out": "{tmp}/gan.safetensors/lib"}, "gan.safetensors is a file, not a folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(world, tiny_sdxl_path, tmp_path, capsys, change, message):
    gan, candidates, _ = world
    args = build_args(gan, tiny_sdxl_path, tmp_path / "lib", candidates)
    if "--top" in change:  # --top and --candidates exclude each other
        i = args.index("--candidates")
        del args[i : i + 2]
    for option, value in change.items():
        value = value.format(tmp=tmp_path)
        if option in args:
            args[args.index(option) + 1] = value
        else:
            args += [option, value]
    assert main(args) == 2
    assert message in _error(capsys)


def test_unwritable_out_folder(world, tiny_sdxl_path, tmp_path, capsys, monkeypatch):
    gan, candidates, _ = world
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes into read-only folders: the file system refuses it instead

        def refused(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "TemporaryDirectory", refused)
    assert main(build_args(gan, tiny_sdxl_path, locked, candidates)) == 2
    assert f"--out {locked}: cannot create files in {locked} (Permission denied)" in _error(capsys)
    assert not (locked / "build.json").exists()


def test_command_line_defaults_are_the_library_settings_defaults(world, tiny_sdxl_path, tmp_path):
    from transfer.cli import build_parser
    from transfer.commands.aliases import gan_aliases, model_aliases
    from transfer.commands.library import settings_from_args
    from transfer.library.plan import LibrarySettings

    gan = str(world[0])
    args = build_parser().parse_args(
        ["library", "build", "--gan", gan, "--model", "m", "--out", str(tmp_path)]
    )
    expected = LibrarySettings(gan=gan, model="m", gan_aliases=gan_aliases(), model_aliases=model_aliases())
    assert settings_from_args(args) == expected


def test_threads_reach_every_slider_but_do_not_decide_them(world, tmp_path):
    from transfer.cli import build_parser
    from transfer.commands.library import settings_from_args

    argv = ["library", "build", "--gan", str(world[0]), "--model", "m", "--out", str(tmp_path)]
    default = settings_from_args(build_parser().parse_args(argv))
    two = settings_from_args(build_parser().parse_args([*argv, "--threads", "2"]))
    from stylegan_bridge.candidates import CandidateEntry

    candidate = CandidateEntry(1, "L0.c3", "channel", 2.0, {}, layer="L0", layer_index=0, channel=3)
    assert two.threads == 2 and two.plan(candidate, tmp_path).threads == 2
    assert two.key() == default.key()  # a build may be resumed with other threads


def test_candidates_of_another_generator_are_refused(world, tiny_sdxl_path, tmp_path, capsys):
    gan, _, _ = world
    other = make_gan(tmp_path / "other.safetensors", seed=1)
    candidates = write_candidates(tmp_path / "other-cand", other, candidate_entries(other))
    out = tmp_path / "lib"
    assert main(build_args(gan, tiny_sdxl_path, out, candidates)) == 2
    assert str(candidates) in _error(capsys)
    assert not (out / "build.json").exists()


def _run(command: list[str], cwd, env) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def _without_timings(index: dict) -> dict:
    return {**index, "sliders": [{k: v for k, v in s.items() if k != "seconds"} for s in index["sliders"]]}


@pytest.mark.slow
def test_two_process_build_equals_one_process_build(world, tiny_sdxl_path, tmp_path):
    gan, _, prompts = world
    candidates = write_candidates(tmp_path / "cand2", gan, candidate_entries(gan, 2))  # one slider a process
    prompts.write_text("a cat\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CONCEPT_TRANSFER_CACHE": str(tmp_path / "cache")}
    args = [*build_args(gan, tiny_sdxl_path, tmp_path / "one", candidates), "--prompts", str(prompts),
            "--calibration-scales", "-2,2"]  # fmt: skip
    _run([sys.executable, "-m", "transfer", *args], tmp_path, env)
    args[args.index("--out") + 1] = str(tmp_path / "two")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    _run([*torchrun, "-m", "transfer", *args], tmp_path, env)

    one, two = (json.loads((tmp_path / d / "index.json").read_text()) for d in ("one", "two"))
    assert _without_timings(one) == _without_timings(two)
    assert one["counts"] == {"done": 2, "failed": 0, "pending": 0}
    for slider in one["sliders"]:
        assert (tmp_path / "one" / slider["file"]).read_bytes() == (
            tmp_path / "two" / slider["file"]
        ).read_bytes()
        for grid in slider["previews"]:
            a, b = (np.asarray(Image.open(tmp_path / d / grid)) for d in ("one", "two"))
            assert np.array_equal(a, b)


def test_rename_and_show(world, tiny_sdxl_path, tmp_path, capsys):
    lib = tmp_path / "lib"
    lib.mkdir()
    index = {"format": "concept-transfer.library/1", "generator": {"file": "g", "sha256": "0" * 64},
             "model": "m", "settings": {}, "counts": {"done": 1, "failed": 0, "pending": 0},
             "sliders": [{"id": "L3_72_64.c0", "name": "L3_72_64.c0", "rank": 1, "status": "done",
                          "reason": None, "file": "L3_72_64.c0/slider.safetensors", "previews": [],
                          "calibration": {"raw_at_1": 2.5, "raw_at_minus_1": -2.0, "user_range": [-2, 2],
                                          "unit_effect": 0.05, "distance": "latent_mean_abs"}}]}  # fmt: skip
    (lib / "index.json").write_text(json.dumps(index))
    assert main(["library", "rename", str(lib), "L3_72_64.c0", "eye size"]) == 0
    assert json.loads((lib / "index.json").read_text())["sliders"][0]["name"] == "eye size"
    assert "eye size" in (lib / "index.html").read_text()
    capsys.readouterr()
    assert main(["library", "show", str(lib)]) == 0
    assert "eye size" in capsys.readouterr().out
    assert main(["library", "rename", str(lib), "nope", "x"]) == 2
    assert "no slider 'nope' (sliders: L3_72_64.c0)" in _error(capsys)


@pytest.mark.slow
def test_without_candidates_the_build_discovers_them_once(world, tiny_sdxl_path, tmp_path, capsys):
    gan, candidates, prompts = world
    args = build_args(gan, tiny_sdxl_path, tmp_path / "lib", candidates, "--top", "2", "--components", "2",
                      "--prompts", str(prompts),
                      "--calibration-scales", "-2,2")  # fmt: skip
    i = args.index("--candidates")
    del args[i : i + 2]
    assert main(args) == 0
    found = tmp_path / "lib" / "candidates" / "candidates.json"
    names = [c["name"] for c in json.loads(found.read_text())["candidates"]]
    index = json.loads((tmp_path / "lib" / "index.json").read_text())
    assert len(names) == 2 and [s["id"] for s in index["sliders"]] == names
    assert index["counts"]["done"] == 2
    discovered_at = found.stat().st_mtime_ns
    assert main(args) == 0  # nothing left to do: the candidates and the sliders are kept
    assert found.stat().st_mtime_ns == discovered_at
