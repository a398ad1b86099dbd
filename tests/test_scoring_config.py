"""ScoreConfig validates itself once and names the offending field."""

from __future__ import annotations

import dataclasses

import pytest

from mnist_batch.config import ScoreConfig
from mnist_batch.constants import IMAGE_EXTENSIONS

GOOD = ScoreConfig(model="m.keras", inputs=("in",), output="out")


def test_defaults():
    assert GOOD.extensions == IMAGE_EXTENSIONS
    assert GOOD.max_batch_size == 256 and GOOD.max_pixels == 40_000_000
    assert GOOD.review_threshold is None and GOOD.max_error_rate is None and not GOOD.overwrite  # None: the card's


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": ""}, "model"),
        ({"model": "m.h5"}, "model"),
        ({"inputs": ()}, "inputs"),
        ({"inputs": ("",)}, "inputs"),
        ({"output": ""}, "output"),
        ({"extensions": (".png",)}, "extensions"),
        ({"extensions": ("PNG",)}, "extensions"),
        ({"review_threshold": 1.5}, "review_threshold"),
        ({"review_threshold": float("nan")}, "review_threshold"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_error_rate": -0.1}, "max_error_rate"),
        ({"max_pixels": 0}, "max_pixels"),
        ({"run_id": ""}, "run_id"),
    ],
)
def test_bad_values_name_the_field(changes, field):
    with pytest.raises(ValueError, match=f"^{field} "):
        dataclasses.replace(GOOD, **changes)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GOOD.output = "elsewhere"


def test_min_batch_size_is_gone_and_a_stale_flag_is_refused_with_a_hint():
    """``--min-batch-size`` was validated and never read (a group is ``--max-batch-size`` files)."""
    from mnist_batch.errors import MnistBatchError
    from mnist_batch.scoring.options import check_beam_args, option_strings

    assert "--max-batch-size" in option_strings() and "--min-batch-size" not in option_strings()
    with pytest.raises(MnistBatchError, match=r"unknown option --min-batch-size \(did you mean --max-batch-size\?\)"):
        check_beam_args(["--min-batch-size=128"])
    assert not hasattr(GOOD, "min_batch_size")


def test_the_launch_settings_build_beams_options_once_and_name_the_runner():
    from mnist_batch.cli import build_parser
    from mnist_batch.scoring.options import parse

    argv = ["score", "--model", "m.keras", "--input", "in", "--output", "out"]
    args, beam = build_parser().parse_known_args([*argv, "--runner", "PortableRunner", "--job_endpoint", "x:1"])
    settings = parse(args, beam)
    assert settings.pipeline_options is settings.pipeline_options  # one object for checks, filesystems and job
    assert settings.runner == "PortableRunner"
    assert settings.pipeline_options.get_all_options()["job_endpoint"] == "x:1"
    args, beam = build_parser().parse_known_args(argv)
    assert parse(args, beam).runner == "DirectRunner"  # Beam's default, named
