"""Packaging for mnist_batch.

``install_requires`` and the ``train`` extra are read from requirements.txt (the one place the
stack is pinned): ``pip install .`` scores (LiteRT), ``pip install '.[train]'`` adds TensorFlow;
MANIFEST.in ships that file in the sdist, which is what Beam's ``--setup_file`` builds for
remote workers.
"""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).resolve().parent


def read_requirements(name: str = "requirements.txt") -> dict[str, list[str]]:
    """``{"": install_requires, EXTRA: its requirements}``: lines under a ``# [EXTRA]`` header belong to EXTRA."""
    sections: dict[str, list[str]] = {"": []}
    section = ""
    for line in (HERE / name).read_text(encoding="utf-8").splitlines():
        header = line.strip().removeprefix("#").strip()
        if line.lstrip().startswith("#") and header.startswith("[") and "]" in header:
            section = header[1 : header.index("]")]
            sections.setdefault(section, [])
            continue
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            sections[section].append(requirement)
    return sections


def read_version() -> str:
    for line in (HERE / "mnist_batch" / "__init__.py").read_text(encoding="utf-8").splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("no __version__ in mnist_batch/__init__.py")


REQUIREMENTS = read_requirements()

setup(
    name="mnist-batch",
    version=read_version(),
    description="Train a digit model, then score folders of scanned digits in batch with Apache Beam.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["mnist_batch", "mnist_batch.*"]),
    package_data={"mnist_batch.data.assets": ["*.npz", "*.md"]},
    include_package_data=True,
    install_requires=REQUIREMENTS[""],
    extras_require={
        # training, export and the keras runtime (TensorFlow); `pip install .` alone scores with LiteRT
        "train": REQUIREMENTS["train"],
        "gcp": ["apache-beam[gcp]==2.70.*"],
        "aws": ["apache-beam[aws]==2.70.*"],
        "gpu": ["tensorflow[and-cuda]==2.21.*"],
        # readers of the run store, tested: pandas, DuckDB, Polars (Spark: make test-spark); the aws
        # extra (boto3) for the tests against a real S3-compatible server (make test-s3)
        "dev": [
            "apache-beam[aws]==2.70.*",
            "pytest>=8",
            "pytest-xdist>=3.6",
            "ruff==0.17.*",
            "pandas>=2.2,<4",
            "duckdb>=1.1",
            "polars>=1.10",
            # the reference parser of Prometheus' text format, for monitor --metrics-file's tests
            "prometheus-client>=0.20",
        ],
    },
    entry_points={"console_scripts": ["mnist-batch=mnist_batch.cli:entry_point"]},
    license="Apache-2.0 (code); bundled MNIST sample CC BY-SA 3.0",
    classifiers=["Programming Language :: Python :: 3.11"],
)
