"""Packaging: the sdist that Beam's --setup_file builds carries requirements and the sample."""

import ast
import pathlib
import subprocess
import sys
import tarfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_sdist_ships_requirements_and_bundled_sample(tmp_path):
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path), "--formats", "gztar"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert "requirements.txt" in names
    assert "mnist_batch/data/assets/mnist_sample.npz" in names
    assert "setup.py" in names


def test_install_requires_and_the_train_extra_are_requirements_txt():
    """``pip install .`` is the scoring stack without TensorFlow; the ``train`` extra adds it (one pin each)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, setuptools; setuptools.setup = lambda **kw: print(repr((kw['install_requires'], "
            "kw['extras_require']['train']))); runpy.run_path('setup.py')",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    install_requires, train = ast.literal_eval(out.stdout)
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("# [train]"))
    pins = [
        [line.split("#")[0].strip() for line in part if line.split("#")[0].strip()]
        for part in (lines[:header], lines[header:])
    ]
    assert (install_requires, train) == (pins[0], pins[1])
    for pin in ("apache-beam==2.70.*", "pyarrow>=16,<19", "ai-edge-litert>=2.3,<3"):
        assert pin in install_requires
    assert train == ["tensorflow==2.21.*"] and not any(r.startswith(("tensorflow", "keras")) for r in install_requires)


def test_python_and_stack_versions_match_the_pins():
    import apache_beam
    import pyarrow
    import tensorflow as tf

    assert sys.version_info[:2] == (3, 11)
    assert tf.__version__.startswith("2.21.")
    assert apache_beam.__version__.startswith("2.70.")
    assert int(pyarrow.__version__.split(".")[0]) < 19
