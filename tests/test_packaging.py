"""Packaging: the sdist that Beam's --setup_file builds carries requirements and the sample."""

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


def test_install_requires_is_requirements_txt():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, setuptools; setuptools.setup = lambda **kw: print(kw['install_requires']); "
            "runpy.run_path('setup.py')",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    requirements = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert out.stdout.strip() == str(requirements)
    for pin in ("tensorflow==2.21.*", "apache-beam==2.70.*", "pyarrow>=16,<19"):
        assert pin in requirements


def test_python_and_stack_versions_match_the_pins():
    import apache_beam
    import pyarrow
    import tensorflow as tf

    assert sys.version_info[:2] == (3, 11)
    assert tf.__version__.startswith("2.21.")
    assert apache_beam.__version__.startswith("2.70.")
    assert int(pyarrow.__version__.split(".")[0]) < 19
