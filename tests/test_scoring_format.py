"""Predictions are built per chunk (pyarrow tables), counted per chunk, and written with WriteToParquetBatched:
the table builder against hand-made rows, the chunking DoFn under TestPipeline, the statistics combiner
against metrics.confusion_matrix, and the chunked sink read back as one Parquet data set.
"""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow.parquet as pq
import pytest

from mnist_batch import metrics

apache_beam = pytest.importorskip("apache_beam")

from apache_beam.ml.inference.base import PredictionResult  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline  # noqa: E402
from apache_beam.testing.util import assert_that, equal_to  # noqa: E402

from mnist_batch.scoring.decode import ImageKey  # noqa: E402
from mnist_batch.scoring.format import FormatPredictionsFn, predictions_table  # noqa: E402
from mnist_batch.scoring.sinks import PREDICTIONS_SCHEMA, WriteTable  # noqa: E402
from mnist_batch.scoring.stats import PredictionStatsFn  # noqa: E402

NAMES = ("zero", "one", "two")
NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)


def one_hot_ish(predicted: int, confidence: float) -> np.ndarray:
    p = np.full(3, (1.0 - confidence) / 2, np.float32)
    p[predicted] = confidence
    return p


def test_predictions_table_matches_hand_made_rows():
    keys = [ImageKey("a/1/x.png", 1, False), ImageKey("b.png", None, True), ImageKey("c/0/é z.png", 0, False)]
    probs = np.stack([one_hot_ish(1, 0.95), one_hot_ish(2, 0.5), one_hot_ish(2, 0.8)])
    table = predictions_table(
        keys, probs, class_names=NAMES, model_id="m", run_id="r", review_threshold=0.9, scored_at=NOW
    )
    assert table.schema.equals(PREDICTIONS_SCHEMA)
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == ["a/1/x.png", "b.png", "c/0/é z.png"]
    assert [r["true_label"] for r in rows] == [1, None, 0]
    assert [r["true_class"] for r in rows] == ["one", None, "zero"]
    assert [r["predicted_label"] for r in rows] == [1, 2, 2]
    assert [r["predicted_class"] for r in rows] == ["one", "two", "two"]
    assert np.allclose([r["confidence"] for r in rows], [0.95, 0.5, 0.8])
    assert [r["low_confidence"] for r in rows] == [False, True, True]
    assert [r["blank"] for r in rows] == [False, True, False]
    assert np.allclose(np.asarray([r["probabilities"] for r in rows]), probs)
    assert {r["model_id"] for r in rows} == {"m"} and {r["run_id"] for r in rows} == {"r"}
    assert {r["scored_at"] for r in rows} == {NOW}


def test_predictions_table_of_no_rows_is_empty_with_the_schema():
    table = predictions_table(
        [],
        np.zeros((0, 3), np.float32),
        class_names=NAMES,
        model_id="m",
        run_id="r",
        review_threshold=0.9,
        scored_at=NOW,
    )
    assert table.num_rows == 0 and table.schema.equals(PREDICTIONS_SCHEMA)


def elements(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = None if i % 4 == 3 else int(rng.integers(0, 3))
        probs = rng.dirichlet(np.ones(3)).astype(np.float32)
        out.append((ImageKey(f"img/{i:03d}.png", label, i % 5 == 0), PredictionResult(None, probs)))
    return out


@pytest.mark.slow
def test_format_predictions_chunks_every_row_once():
    data = elements(23)
    fn = FormatPredictionsFn(NAMES, "m", "r", 0.6, rows_per_table=5)
    with BeamTestPipeline() as p:
        tables = p | apache_beam.Create(data) | apache_beam.ParDo(fn)
        assert_that(
            tables | "Sizes" >> apache_beam.Map(lambda t: t.num_rows <= 5) | "AllSmall" >> apache_beam.Distinct(),
            equal_to([True]),
            label="ChunksBounded",
        )
        paths = tables | apache_beam.FlatMap(lambda t: t.column("path").to_pylist())
        assert_that(paths, equal_to([k.path for k, _ in data]), label="EveryRowOnce")


def test_format_predictions_rejects_bad_chunk_size():
    with pytest.raises(ValueError, match="rows_per_table"):
        FormatPredictionsFn(NAMES, "m", "r", 0.6, rows_per_table=0)


@pytest.mark.parametrize("order", ["mixed", "labelled-first"])
def test_prediction_stats_over_chunks_equals_the_confusion_matrix(order):
    """Chunks with some rows labelled, and (``labelled-first``) chunks all labelled or none."""
    data = elements(40, seed=3)
    if order == "labelled-first":
        data.sort(key=lambda e: e[0].true_label is None)
    chunks = [
        predictions_table(
            [k for k, _ in part],
            np.stack([r.inference for _, r in part]),
            class_names=NAMES,
            model_id="m",
            run_id="r",
            review_threshold=0.6,
            scored_at=NOW,
        )
        for part in (data[:7], data[7:30], data[30:])
    ]
    fn = PredictionStatsFn(3)
    accs = [fn.add_input(fn.create_accumulator(), chunks[0]), fn.create_accumulator()]
    accs[1] = fn.add_input(fn.add_input(accs[1], chunks[1]), chunks[2])
    out = fn.extract_output(fn.merge_accumulators(accs))
    labelled = [(k.true_label, int(r.inference.argmax())) for k, r in data if k.true_label is not None]
    expected = metrics.confusion_matrix([t for t, _ in labelled], [p for _, p in labelled], 3)
    assert np.array_equal(out["confusion"], expected)
    assert out["scored"] == 40 and out["labelled"] == len(labelled) == 30
    assert out["blank"] == 8
    assert out["low_confidence"] == sum(float(r.inference.max()) < 0.6 for _, r in data)
    # The per-run aggregates monitoring reads: predicted class mix and binned confidence of every row.
    predicted = np.array([int(r.inference.argmax()) for _, r in data])
    confidence = np.array([float(r.inference.max()) for _, r in data], np.float32)
    assert out["predicted"].tolist() == np.bincount(predicted, minlength=3).tolist()
    assert out["confidence_histogram"].tolist() == metrics.confidence_histogram(confidence).tolist()
    assert out["confidence_histogram"].sum() == 40 and out["confidence_sum"] == pytest.approx(confidence.sum(), 1e-5)


def test_chunked_predictions_are_one_parquet_data_set(tmp_path):
    data = elements(50, seed=5)
    with BeamTestPipeline() as p:
        tables = (
            p
            | apache_beam.Create(data)
            | apache_beam.ParDo(FormatPredictionsFn(NAMES, "m", "r", 0.6, rows_per_table=8))
        )
        _ = tables | WriteTable(str(tmp_path), "predictions")
    read = pq.read_table(tmp_path / "predictions")
    assert read.schema.equals(PREDICTIONS_SCHEMA, check_metadata=False)
    assert sorted(read.column("path").to_pylist()) == sorted(k.path for k, _ in data)


def test_progress_line_counts_files_and_tells_the_time_left(capsys):
    from mnist_batch.scoring.progress import ProgressLine, progress_text

    assert progress_text(1200, 10_000, 600.0) == "1,200 of 10,000 files done (12 %), 600 files/s, ETA 15 s"
    assert progress_text(1200, None, 600.0) == "1,200 files done, 600 files/s"
    assert progress_text(0, 1_000_000, 500.0).endswith("ETA 33 min 20 s")
    line = ProgressLine(every_s=0.0)
    line.total = 3
    line.add()  # the first item starts the clock
    line.add()
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("mnist-batch score: progress: 2 of 3 files done (67 %)") and "ETA" in last


@pytest.mark.slow
def test_the_launcher_counts_finished_shards_of_a_job_running_elsewhere(tmp_path, capsys, monkeypatch):
    import time

    from mnist_batch.runstore.shards import ShardWriter, new_shard_path
    from mnist_batch.scoring.progress import StagedProgress, progress_every_s
    from mnist_batch.tables import ERRORS_SCHEMA

    monkeypatch.setenv("MNIST_BATCH_PROGRESS_S", "60")
    assert progress_every_s() == 60.0
    monkeypatch.setenv("MNIST_BATCH_PROGRESS_S", "often")
    assert progress_every_s() == 5.0
    staging = tmp_path / "_staging" / "r1.abc"

    def finished(table, schema, rows):
        writer = ShardWriter(new_shard_path(str(staging / table)), schema)
        writer.write(schema.empty_table() if rows == 0 else _rows(schema, rows))
        writer.close()

    with StagedProgress(str(staging), every_s=0.05):
        time.sleep(0.2)  # nothing finished yet: no line
        assert "progress:" not in capsys.readouterr().err
        finished("predictions", PREDICTIONS_SCHEMA, 3)
        finished("errors", ERRORS_SCHEMA, 1)
        open_shard = ShardWriter(new_shard_path(str(staging / "predictions")), PREDICTIONS_SCHEMA)
        open_shard.write(_rows(PREDICTIONS_SCHEMA, 5))  # still being written: no footer, not counted
        time.sleep(0.3)
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("mnist-batch score: progress: 4 files done, ")
        assert last.endswith("files/s (reported by the workers)")
        open_shard.close()
        time.sleep(0.3)
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("mnist-batch score: progress: 9 files done")


def test_a_workers_progress_file_is_written_whole_every_few_seconds_and_at_the_end(tmp_path, caplog):
    import json
    import logging
    import pathlib

    from mnist_batch.scoring.progress import ProgressFile, progress_dir, reported

    folder = progress_dir(str(tmp_path / "_staging" / "r1.abc"))
    assert folder == str(tmp_path / "_staging" / "r1.abc" / "_progress")
    assert reported(folder).files == 0  # no folder yet
    slow, fast = ProgressFile(folder, every_s=3600), ProgressFile(folder, every_s=0)
    assert slow.path != fast.path and slow.path.endswith(".json")
    slow.add(5)  # not yet due: nothing written
    assert not (tmp_path / "_staging" / "r1.abc" / "_progress").exists()
    slow.write()  # the end of a bundle
    fast.add(3)
    assert json.loads(pathlib.Path(slow.path).read_text())["files"] == 5 and reported(folder).files == 8
    fast.add(2)
    assert reported(folder) == (10, min(slow.started, fast.started))
    assert sorted(p.suffix for p in (tmp_path / "_staging" / "r1.abc" / "_progress").iterdir()) == [".json"] * 2
    # A file cut short, garbled or of another shape, and a write's temp file, are not counted.
    for name, text in [("cut.json", '{"files": 1'), ("neg.json", '{"files": -4}'), ("str.json", '{"files": "7"}'),
                       ("list.json", "[1]"), ("bool.json", '{"files": true}'), ("w.json.tmp-0123", '{"files": 99, "started": 1}')]:  # fmt: skip
        (tmp_path / "_staging" / "r1.abc" / "_progress" / name).write_text(text)
    assert reported(folder) == (10, min(slow.started, fast.started))
    # A write that fails (here: the folder's place is a file) never fails the worker; logged once.
    (tmp_path / "blocked").write_text("a file, not a folder")
    broken = ProgressFile(str(tmp_path / "blocked" / "_progress"), every_s=0)
    with caplog.at_level(logging.DEBUG, logger="mnist_batch.scoring.progress"):
        broken.add()
        broken.add()
        broken.write()
    assert broken.done == 2
    assert [r.levelno for r in caplog.records if "not written" in r.getMessage()] == [logging.DEBUG]


@pytest.mark.slow
def test_the_launcher_sums_the_workers_progress_files_before_their_shards_finish(tmp_path, capsys):
    import json
    import time

    from mnist_batch.runstore.shards import ShardWriter, new_shard_path
    from mnist_batch.scoring.progress import ProgressFile, StagedProgress, progress_dir

    staging = tmp_path / "_staging" / "r1.abc"
    workers = [ProgressFile(progress_dir(str(staging)), every_s=0) for _ in range(2)]
    with StagedProgress(str(staging), every_s=0.05):
        workers[0].add(300)
        workers[1].add(200)
        time.sleep(0.3)
        first = capsys.readouterr().err.strip().splitlines()
        assert first[-1].startswith("mnist-batch score: progress: 500 files done, ")
        assert first[-1].endswith("files/s (reported by the workers)")
        workers[1].add(100)
        time.sleep(0.3)
        second = capsys.readouterr().err.strip().splitlines()
        assert len(second) == 1 and second[0].startswith("mnist-batch score: progress: 600 files done, ")
        # Files/s from the first file a worker began, not from the launcher's wait (the job's start-up).
        began = time.time() - 10
        (staging / "_progress" / "early.json").write_text(json.dumps({"files": 400, "started": began}))
        time.sleep(0.3)
        rate = capsys.readouterr().err.strip().splitlines()[-1]
        assert rate.startswith("mnist-batch score: progress: 1,000 files done, "), rate
        assert 80 <= int(rate.split("done, ")[1].split(" files/s")[0]) <= 100, rate  # 1,000 files in 10 s and a bit
        time.sleep(0.2)  # nothing moved: no line
        assert capsys.readouterr().err == ""
        # Finished shards that say more (workers that could not write their files) are the count then.
        writer = ShardWriter(new_shard_path(str(staging / "predictions")), PREDICTIONS_SCHEMA)
        writer.write(_rows(PREDICTIONS_SCHEMA, 1100))
        writer.close()
        time.sleep(0.3)
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("mnist-batch score: progress: 1,100 files done")


def _rows(schema, n):
    """``n`` rows of ``schema`` with every column filled (a shard's content does not matter here)."""
    import pyarrow as pa

    def value(field):
        if pa.types.is_list(field.type):
            return [0.5]
        if pa.types.is_string(field.type):
            return "x"
        if pa.types.is_floating(field.type):
            return 0.5
        if pa.types.is_timestamp(field.type):
            return datetime.datetime(2026, 1, 1)
        return True if pa.types.is_boolean(field.type) else 1

    return pa.Table.from_pylist([{f.name: value(f) for f in schema} for _ in range(n)], schema=schema)


def test_prediction_chunks_are_written_in_row_groups_of_rows_per_group_not_one_per_group(tmp_path):
    """A million-file shard wrote ~3,900 row groups of 256 rows; the writer keeps their metadata until it closes."""
    from mnist_batch.runstore.shards import ROWS_PER_GROUP
    from mnist_batch.scoring.sinks import WriteShardsFn

    fn = WriteShardsFn(str(tmp_path / "predictions"), PREDICTIONS_SCHEMA)
    fn.start_bundle()
    for _ in range(20):  # 20 groups of 256 predictions, as FormatGroupsFn emits them
        assert list(fn.process(_rows(PREDICTIONS_SCHEMA, 256))) == []
    (written,) = list(fn.finish_bundle())
    path, rows = written.value
    meta = pq.ParquetFile(path).metadata
    assert rows == meta.num_rows == 20 * 256
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [
        ROWS_PER_GROUP,
        20 * 256 - ROWS_PER_GROUP,
    ]


def test_a_groups_labels_at_once_are_each_files_own_label():
    """``LabelLookup.many`` (the in-process job's labels, one lookup a folder) gives what one lookup a
    file gives: folders coming back, a folder that names no class, a bare name, a CSV's labels."""
    from mnist_batch.scoring.labels import LabelLookup

    names = [str(d) for d in range(10)]
    paths = ["/in/3/a.png", "/in/3/b.png", "/in/7/c.png", "/in/3/d.png", "/in/cats/e.png", "f.png", "g.png"]
    paths += ["/in/seven/h.png", "/in/7/i.png", "/in/7/sub/j.png"]
    for lookup in (lambda: LabelLookup(names), lambda: LabelLookup(names, {"/in/3/a.png": 5, "f.png": 1})):
        one_by_one = lookup()
        expected = [one_by_one(p) for p in paths]
        assert lookup().many(paths) == expected
        together = lookup()
        assert together.many(paths[:3]) + together.many(paths[3:]) == expected  # its memory spans groups
    assert LabelLookup(names).many(paths)[:4] == [3, 3, 7, 3]
