"""What a new user hits first at the command line, checked before any model loads (each case exits 2).

Every command line here names a model or generator that does not exist: an error about it would mean
the command went on to load a model before finding the real problem.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from transfer.cli import main

MISSING = "/nonexistent/model"


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv("CONCEPT_TRANSFER_DEBUG", raising=False)


def _error(capsys, argv: list[str]) -> str:
    """Run the CLI, expect exit 2 with one line on stderr, return that line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _commands(out: str) -> dict[str, list[str]]:
    """One command line per subcommand that writes a user-named output, all with a missing model."""
    text = ["--target", "a", "--positive", "b", "--negative", "c"]
    return {
        "train text": ["train", "text", "--model", MISSING, *text, "--out", out],
        "train visual": ["train", "visual", "--model", MISSING, "--pairs", MISSING, "--out", out],
        "apply": ["apply", "--model", MISSING, "--prompt", "a", "--out", out],
        "mine": ["mine", "--gan", MISSING, "--layer", "0", "--channel", "0", "--pairs", "1", "--out", out],
        "directions": ["directions", "channels", "--gan", MISSING, "--box", "0,0,1,1", "--out", out],
        "transfer": ["transfer", "--gan", MISSING, "--model", MISSING, "--layer", "0", "--channel", "0",
                     "--out", out],
        "gan export": ["gan", "export", MISSING, "--out", out],
        "pairs ingest": ["pairs", "ingest", MISSING, "--out", out],
    }  # fmt: skip


def _suffix(command: str) -> str:
    return {"gan export": ".safetensors", "directions": ".safetensors", "train text": ".safetensors",
            "train visual": ".safetensors"}.get(command, "")  # fmt: skip


@pytest.mark.parametrize("command", sorted(_commands("x")))
def test_an_out_under_a_file_is_refused_before_any_model_loads(tmp_path, capsys, command):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    out = blocker / f"result{_suffix(command)}"
    err = _error(capsys, _commands(str(out))[command])
    assert f"--out {out}" in err and "notes.txt" in err and "not a folder" in err
    assert MISSING not in err


def _unwritable_folder() -> Path | None:
    """A folder no one may create files in, not even root (sysfs), or None on this system."""
    folder = Path("/sys")
    if not folder.is_dir() or os.access(folder, os.W_OK) and _can_create(folder):
        return None
    return folder


def _can_create(folder: Path) -> bool:
    try:
        (folder / "concept-transfer-probe").mkdir()
    except OSError:
        return False
    (folder / "concept-transfer-probe").rmdir()
    return True


@pytest.mark.parametrize("command", ["train text", "apply", "mine"])
def test_an_unwritable_out_is_refused_before_any_model_loads(tmp_path, capsys, command):
    folder = _unwritable_folder()
    if folder is None:
        pytest.skip("no folder here that refuses new files")
    out = folder / "concept-transfer-test" / f"result{_suffix(command)}"
    err = _error(capsys, _commands(str(out))[command])
    assert f"--out {out}" in err and "cannot" in err
    assert MISSING not in err


def test_train_out_that_is_a_folder_or_checkpoint_that_is_a_folder(tmp_path, capsys):
    out = tmp_path / "age.safetensors"
    out.mkdir()
    err = _error(capsys, _commands(str(out))["train text"])
    assert f"--out {out}" in err and "is a folder" in err
    out.rmdir()
    (tmp_path / "age.ckpt").mkdir()
    err = _error(capsys, _commands(str(out))["train text"])
    assert str(tmp_path / "age.ckpt") in err and "is a folder" in err


def test_train_out_in_a_folder_to_be_made_is_fine(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "age.safetensors"
    err = _error(capsys, _commands(str(out))["train text"])
    assert MISSING in err  # the output passed its checks; the model is what is missing


def test_train_refuses_to_replace_a_slider_or_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "age.safetensors"
    out.write_bytes(b"an earlier slider")
    err = _error(capsys, _commands(str(out))["train text"])
    assert f"--out {out}" in err and "--force" in err
    out.unlink()
    ckpt = tmp_path / "age.ckpt"
    ckpt.write_bytes(b"an earlier run")
    err = _error(capsys, _commands(str(out))["train text"])
    assert str(ckpt) in err and "--resume" in err and "--force" in err
    assert ckpt.read_bytes() == b"an earlier run"
    # --force goes on to the model (and would start afresh).
    assert MISSING in _error(capsys, [*_commands(str(out))["train text"], "--force"])


def test_apply_and_directions_refuse_to_replace_outputs(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "summary.json").write_text("{}")
    err = _error(capsys, _commands(str(sweep))["apply"])
    assert f"--out {sweep}" in err and "--force" in err
    assert MISSING in _error(capsys, [*_commands(str(sweep))["apply"], "--force"])
    directions = tmp_path / "eyes.safetensors"
    directions.write_bytes(b"earlier directions")
    err = _error(capsys, _commands(str(directions))["directions"])
    assert f"--out {directions}" in err and "--force" in err


APPLY = ["apply", "--model", MISSING, "--prompt", "a"]
CHANNELS = ["directions", "channels", "--gan", MISSING, "--box", "0,0,1,1"]
MINE = ["mine", "--gan", MISSING, "--layer", "0", "--channel", "0", "--pairs", "1"]
TEXT = ["train", "text", "--model", MISSING, "--target", "a", "--positive", "b", "--negative", "c"]
TRANSFER = ["transfer", "--gan", MISSING, "--model", MISSING, "--layer", "0", "--channel", "0"]


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        ([*APPLY, "--guidance", "nan"], "--guidance"),
        ([*APPLY, "--start-noise", "-5"], "--start-noise"),
        ([*APPLY, "--start-noise", "2000"], "--start-noise"),
        ([*APPLY, "--start-noise", "nan"], "--start-noise"),
        ([*APPLY, "--slider", "x.safetensors", "--scales", ""], "--scales"),
        ([*APPLY, "--seeds", "-1"], "--seeds"),
        ([*APPLY, "--steps", "0"], "--steps"),
        ([*CHANNELS, "--delta", "nan"], "--delta"),
        ([*CHANNELS, "--preview-seeds", "-1"], "--preview-seeds"),
        ([*MINE, "--delta", "inf"], "--delta"),
        ([*TEXT, "--guidance-scale", "nan"], "--guidance-scale"),
        ([*TEXT, "--lr", "inf"], "--lr"),
        ([*TEXT, "--resolution", "0"], "--resolution"),
        ([*TRANSFER, "--seeds", "-1"], "--seeds"),
        ([*TRANSFER, "--start-noise", "1001"], "--start-noise"),
    ],
)
def test_non_finite_or_out_of_range_numbers_are_refused_naming_the_option(tmp_path, capsys, argv, option):
    out = tmp_path / ("x.safetensors" if argv[0] in ("train", "directions") else "out")
    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and option in err and MISSING not in err and "Traceback" not in err, err


def test_fp16_on_the_cpu_is_refused_before_loading(tmp_path, capsys):
    err = _error(capsys, [*_commands(str(tmp_path / "x.safetensors"))["train text"], "--device", "cpu",
                          "--dtype", "fp16"])  # fmt: skip
    assert "--dtype fp16" in err and "CPU" in err and MISSING not in err


def test_messages_point_at_the_real_problem(tmp_path, capsys):
    apply = ["apply", "--model", MISSING, "--prompt", "a", "--out", str(tmp_path / "out")]
    slider = tmp_path / "age.safetensors"
    slider.write_bytes(b"")
    err = _error(capsys, [*apply, "--slider", f"{slider}:abc"])
    assert "scale 'abc' is not a number" in err
    err = _error(capsys, [*apply, "--slider", str(tmp_path)])
    assert f"--slider {tmp_path}: is a folder" in err
    text = ["train", "text", "--model", MISSING, "--out", str(tmp_path / "x.safetensors")]
    err = _error(capsys, [*text, "--config", str(tmp_path)])
    assert f"--config {tmp_path}: is a folder" in err
    picture = tmp_path / "some.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    err = _error(capsys, [*text, "--config", str(picture)])
    assert f"--config {picture}: not a text file" in err and "codec" not in err


def test_a_slider_given_as_the_model_is_named_as_such(tiny_pipe, make_slider_file, tmp_path, capsys):
    slider = make_slider_file(tiny_pipe.unet, "age")
    err = _error(capsys, ["apply", "--model", str(slider), "--prompt", "a", "--out", str(tmp_path / "o")])
    assert f"--model {slider}: is a LoRA / slider file, not an SDXL checkpoint; pass it as --slider" in err


def test_a_model_missing_offline_says_so_and_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    err = _error(
        capsys, ["apply", "--model", "someone/sdxl-model", "--prompt", "a", "--out", str(tmp_path / "o")]
    )
    assert "--model someone/sdxl-model: not in the local Hugging Face cache" in err
    assert "stacktrace" not in err and "local_files_only" not in err


def test_operating_system_errors_are_one_line_naming_the_path():
    import errno

    from transfer.errors import describe

    error = OSError(errno.EROFS, "Read-only file system", "/mnt/ro/age.safetensors")
    assert describe(error) == "/mnt/ro/age.safetensors: Read-only file system (EROFS)"
    assert describe(ValueError("--lr: must be a positive number")) == "--lr: must be a positive number"
