"""Quiet by default: the stderr filter, --verbose/--quiet, help text, closed pipes, compact JSON."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from mnist_batch import jsonfmt
from mnist_batch.cli import build_parser, main
from mnist_batch.cli.logs import DEFAULT, QUIET, VERBOSE, keep_line

SUBCOMMANDS = (
    ["data"],
    ["data", "info"],
    ["data", "export-images"],
    ["train"],
    ["score"],
    ["runs"],
    ["monitor"],
    ["evaluate"],
    ["report"],
    ["predict"],
)

CUINIT = (
    "E0000 00:00:1764537600.123456   30773 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"
)
ONEDNN = (
    "I0000 00:00:1764537600.000001   30773 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results"
)
REAL_NATIVE_ERROR = "E0000 00:00:1764537601.000000   30773 op_kernel.cc:1857] OP_REQUIRES failed: out of memory"


@pytest.mark.parametrize(
    ("line", "default", "quiet"),
    [
        (CUINIT, False, False),
        (ONEDNN, False, False),
        ("W0000 00:00:1764537601.000000   30773 some.cc:10] a real warning", True, False),
        (REAL_NATIVE_ERROR, True, True),
        ("WARNING:root:apitools not found, and bigquery client libraries are not available", False, False),
        (
            "WARNING:root:Resource module is not available for current platform, memory usage cannot be fetched.",
            False,
            False,
        ),
        ("WARNING:apache_beam.options.pipeline_options:Discarding unparseable args: ['--typo']", False, False),
        ("INFO:apache_beam.runners.worker.sdk_worker:Creating insecure control channel", False, False),
        ("WARNING:apache_beam.io.filesystem:a warning that matters", True, False),
        ("ERROR:apache_beam.runners.direct:a real error", True, True),
        ("WARNING:__main__:No semi_persistent_directory found:  User registered objects", False, False),
        ("INFO:apache_beam.runners.portability.local_job_service:Worker: severity: INFO timestamp {", False, False),
        (
            "WARNING:tensorflow:5 out of the last 5 calls to <function compiled_call.<locals>.call at 0x7f> "
            "triggered tf.function retracing. Tracing is expensive",
            False,
            False,
        ),
        ("Traceback (most recent call last):", True, True),
        ("mnist-batch: error: /data: no such directory", True, True),
        ("mnist-batch score: progress: 1,200 images scored, 600 img/s (worker 1)", True, False),
    ],
)
def test_stderr_filter_drops_noise_and_keeps_real_errors(line, default, quiet):
    assert keep_line(line + "\n", DEFAULT) is default
    assert keep_line(line + "\n", QUIET) is quiet
    assert keep_line(line + "\n", VERBOSE) is True


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_help_states_exit_codes_and_no_empty_defaults(argv, capsys):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Exit codes:" in out
    assert "(default: None)" not in out
    assert "--verbose" in out and "--quiet" in out
    for option in ("--labels-csv", "--run-id"):
        if option in out:
            section = out.split(option, 1)[1].split(" --", 1)[0]
            assert section.count("default") <= 1, section


def test_every_option_has_help():
    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:  # test-side introspection only
            if action.choices and isinstance(action.choices, dict):
                stack.extend(action.choices.values())
            elif action.option_strings and action.dest != "help":
                assert action.help, f"{p.prog} {action.option_strings} has no help"


def test_train_help_names_fashion_mnist(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "fashion-mnist" in capsys.readouterr().out


def test_verbosity_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["data", "info"]).verbosity == DEFAULT
    assert parser.parse_args(["--quiet", "data", "info"]).verbosity == QUIET
    assert parser.parse_args(["data", "info", "--verbose"]).verbosity == VERBOSE
    assert parser.parse_args(["score", "--model", "m", "--input", "i", "--output", "o", "-q"]).verbosity == QUIET


def test_score_typo_is_one_hint_without_beams_warning(capsys):
    code = main(["score", "--model", "m.keras", "--input", "in", "--output", "out", "--overwite"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "mnist-batch: error: score: unknown option --overwite (did you mean --overwrite?)"
    ]


@pytest.mark.slow
def test_closed_pipe_ends_quietly():
    """`mnist-batch data info sample --json | head` ends without a BrokenPipeError traceback."""
    exe = pathlib.Path(sys.executable).parent / "mnist-batch"
    proc = subprocess.Popen(
        [str(exe), "data", "info", "sample", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # the reader went away before the first line
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_json_keeps_matrix_rows_on_one_line():
    summary = {"confusion_matrix": [[50, 1], [2, 47]], "name": "a [\nb", "nested": [{"x": [1.5, None, True]}]}
    text = jsonfmt.dumps(summary)
    assert json.loads(text) == summary
    assert "    [50, 1],\n    [2, 47]\n" in text and '"x": [1.5, null, true]' in text


def test_debug_before_or_after_the_command_shows_the_traceback(capsys, tmp_path):
    for argv in (
        ["--debug", "data", "info", f"idx:{tmp_path}/nowhere"],
        ["data", "info", f"idx:{tmp_path}/nowhere", "--debug"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and err.strip().endswith("no such directory")
    assert main(["data", "info", f"idx:{tmp_path}/nowhere"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"mnist-batch: error: {tmp_path}/nowhere: no such directory"
    ]


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["score", "--model", "m.keras", "--input", "in", "--ouput", "out"], "--ouput (did you mean --output?)"),
        (["evaluate", "--model", "m.keras", "--outptu", "o"], "--outptu (did you mean --output?)"),
        (["monitor", "root", "--otput", "o"], "--otput (did you mean --output?)"),
    ],
)
def test_a_typo_in_a_required_option_names_the_option_it_meant(argv, hint, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err[-1].endswith(f"error: unrecognized argument {hint}")


def test_a_missing_required_option_without_a_typo_says_so():
    from mnist_batch.cli.common import typo_hint

    message = "the following arguments are required: --input, --output"
    assert typo_hint(message, ["--model", "m", "--input", "i"], ["--model", "--input", "--output"]) is None
    assert typo_hint(message, ["--inptu", "i"], ["--input", "--output"]) == (
        "unrecognized argument --inptu (did you mean --input?)"
    )
    assert typo_hint("argument --split: invalid choice", ["--splt"], ["--split"]) is None


def test_what_needs_tensorflow_says_which_install_adds_it(monkeypatch, capsys, tmp_path):
    """In a scoring-only install (TensorFlow not importable) train and export stop with one line
    (the real install: tests/test_slim_install.py)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    for argv, what in ((["train", "--epochs", "1"], "train"), (["export", str(tmp_path / "m.keras")], "export")):
        assert main(argv) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"mnist-batch: error: {what} needs TensorFlow, which this scoring-only install lacks: "
            "pip install 'mnist-batch[train]'"
        ]


EXIT_SCRIPT = """
import atexit, sys, threading, time
from mnist_batch.cli import exit_now
atexit.register(lambda: print("exit handler ran", flush=True))
if sys.argv[1] == "thread":
    def late():
        time.sleep(0.3)
        print("thread finished", flush=True)
    threading.Thread(target=late).start()
sys.stdout.write("buffered output ")  # not flushed yet
exit_now(3)
"""


@pytest.mark.slow
@pytest.mark.parametrize("case", ["plain", "thread"])
def test_exit_now_keeps_the_exit_code_handlers_output_and_running_threads(case):
    """The console script skips the interpreter's teardown of its modules, not what a user would miss:
    the exit code, buffered output, exit handlers, and a thread still running (waited for)."""
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, case], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    waited = "thread finished\n" if case == "thread" else ""
    assert proc.stdout == "buffered output " + waited + "exit handler ran\n"
