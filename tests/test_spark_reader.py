"""Spark reads a runs root's tables with its usual one-liner: committed runs only, ``run`` a string.

Optional (``make test-spark`` installs OpenJDK 17 from Debian and pyspark from PyPI); skipped
when pyspark or Java is missing, as in ``make test``.
"""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

import scoring_fixtures

pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None:  # pragma: no cover - depends on the machine
    pytest.skip("no Java runtime (make test-spark installs one)", allow_module_level=True)

from mnist_batch.config import ScoreConfig  # noqa: E402
from mnist_batch.scoring.launch import RunOptions, launch  # noqa: E402

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data
pytestmark = pytest.mark.slow


def test_spark_reads_committed_runs_with_string_run_ids(tiny_model, sample_data, tmp_path):
    from PIL import Image
    from pyspark.sql import SparkSession

    test = sample_data.split("test")
    for i in range(7):
        (tmp_path / "in" / str(test.labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(tmp_path / "in" / str(test.labels[i]) / f"{i}.png")
    root = tmp_path / "root"
    ids = []
    for run_id, dt in (("nightly", "2026-11-20"), ("d20261121", "2026-11-21"), (None, "2026-11-22")):
        config = ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "in"),), output=str(root), run_id=run_id)
        ids.append(launch(config, RunOptions(layout="runs", run_date=dt))["run_id"])
    debris = root / "_staging" / "killed.1" / "predictions"  # a killed launch's shards
    debris.mkdir(parents=True)
    pq.write_table(pq.read_table(root / "predictions"), debris / "part-x.parquet")

    spark = SparkSession.builder.master("local[1]").appName("mnist_batch-test").getOrCreate()
    try:
        path = str(root / "predictions")
        df = spark.read.option("basePath", path).parquet(path)
        types = dict(df.dtypes)
        assert types["run"] == "string" and types["dt"] == "date"
        counts = {r["run"]: r["count"] for r in df.groupBy("run").count().collect()}
        assert counts == {run_id: 7 for run_id in ids}
        errors = spark.read.parquet(str(root / "errors"))
        assert errors.count() == 0 and "stage" in errors.columns
    finally:
        spark.stop()
