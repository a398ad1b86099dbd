"""The mnist-batch command line: help, exit codes, one-line errors, data subcommands."""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mnist_batch.cli import EXIT_USAGE, build_parser, main

from conftest import idx_bytes, write_idx_dir

SUBCOMMANDS = ("data", "train", "export", "score", "runs", "monitor", "evaluate", "report", "predict")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help_with_an_example(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "Example" in out and f"mnist-batch {command}" in out


def test_every_subcommand_is_wired():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(SUBCOMMANDS)


def test_data_info_table_and_json(capsys):
    code, out, _ = run_cli(capsys, "data", "info", "sample")
    assert code == 0
    assert "7,000" in out and "1,000" in out and "2,000" in out and "10,000" not in out
    code, out, _ = run_cli(capsys, "data", "info", "sample", "--json")
    info = json.loads(out)
    assert info["splits"]["test"]["total"] == 2000
    assert sum(info["splits"]["train"]["per_class"]) == 7000
    assert info["class_names"] == [str(d) for d in range(10)]


def test_export_images_via_cli(capsys, tmp_path):
    code, out, _ = run_cli(
        capsys, "data", "export-images", "sample", "--split", "validation", "--out", str(tmp_path / "v")
    )
    assert code == 0 and "exported 1,000 validation images" in out
    assert len(list((tmp_path / "v").glob("*/*.png"))) == 1000
    code, _, err = run_cli(
        capsys, "data", "export-images", "sample", "--split", "validation", "--out", str(tmp_path / "v")
    )
    assert code == EXIT_USAGE and "--overwrite" in err
    code, _, _ = run_cli(
        capsys, "data", "export-images", "--split", "validation", "--out", str(tmp_path / "v"), "--overwrite"
    )
    assert code == 0


@pytest.mark.parametrize(
    "corrupt",
    ["missing-dir", "wrong-magic", "truncated", "count-mismatch", "label-range", "corrupt-npz", "unknown-spec"],
)
def test_bad_data_gives_one_line_exit_2_no_traceback(capsys, tmp_path, corrupt):
    spec = f"idx:{tmp_path}"
    if corrupt == "missing-dir":
        spec = f"idx:{tmp_path / 'nowhere'}"
    elif corrupt == "corrupt-npz":
        (tmp_path / "m.npz").write_bytes(b"garbage")
        spec = f"npz:{tmp_path / 'm.npz'}"
    elif corrupt == "unknown-spec":
        spec = "kaggle:digits"
    else:
        write_idx_dir(tmp_path)
        target = tmp_path / (
            "train-labels-idx1-ubyte" if corrupt in ("count-mismatch", "label-range") else "train-images-idx3-ubyte"
        )
        data = {
            "wrong-magic": idx_bytes(np.zeros((60, 28, 28), np.uint8), 0x802),
            "truncated": target.read_bytes()[:-5],
            "count-mismatch": idx_bytes(np.zeros(61, np.uint8), 0x801),
            "label-range": idx_bytes(np.full(60, 200, np.uint8), 0x801),
        }[corrupt]
        target.write_bytes(data)
    code, _out, err = run_cli(capsys, "data", "info", spec)
    assert code == EXIT_USAGE
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnist-batch: error: "), err
    assert "Traceback" not in err
    if corrupt not in ("unknown-spec",):
        assert str(tmp_path) in lines[0]


def test_debug_shows_the_traceback(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--debug", "data", "info", f"idx:{tmp_path / 'nowhere'}")
    assert code == EXIT_USAGE and "Traceback" in err and "no such directory" in err


def test_bad_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "export-images", "sample", "--format", "tiff", "--out", "x"])
    assert info.value.code == 2
    assert "invalid choice: 'tiff'" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_is_installed_and_reads_folders(tmp_path):
    """The installed `mnist-batch` entry point runs as a user would run it."""
    exe = shutil.which("mnist-batch") or str(pathlib.Path(sys.executable).parent / "mnist-batch")
    for label in (3, 5):
        (tmp_path / str(label)).mkdir()
        for i in range(4):
            Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(tmp_path / str(label) / f"{i}.png")
    result = subprocess.run([exe, "data", "info", f"folder:{tmp_path}", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)["splits"]
    assert sum(s["total"] for s in counts.values()) == 8


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["score", "--layout", "runs", "--run-date", "2026-13-01"], "--run-date must be YYYY-MM-DD"),
        (["score", "--layout", "runs", "--expect-model-id", "abc"], "--expect-model-id must have at least 8"),
        (["score", "--max-batch-size", "0"], "--max-batch-size"),
        (["score", "--review-threshold", "2"], "--review-threshold"),
        (["train", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_option_errors_name_the_flag_the_user_typed(capsys, tmp_path, argv, flag):
    # Before: "score: run_date must be YYYY-MM-DD" (the internal field, not the flag).
    if argv[0] == "score":
        argv = [*argv, "--model", str(tmp_path / "m.keras"), "--input", str(tmp_path), "--output", str(tmp_path / "o")]
    code, _, err = run_cli(capsys, *argv)
    assert code == EXIT_USAGE and err.count("\n") == 1 and flag in err, err
    field = flag.split()[0][2:].replace("-", "_")
    assert field not in err, err
