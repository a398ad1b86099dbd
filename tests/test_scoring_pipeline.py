"""The scoring pipeline: build_pipeline under TestPipeline + assert_that, the DoFns on beam.Create,
end-to-end runs with Parquet outputs read back by pyarrow and pandas, the pass-through of the
whole exported test split, labels, exit codes and the CLI.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mnist_batch.config import ScoreConfig
from mnist_batch.data.export import export_images
from mnist_batch.preprocess import normalize, to_mnist

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from apache_beam.io import fileio  # noqa: E402
from apache_beam.io.filesystem import FileMetadata  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline  # noqa: E402
from apache_beam.testing.util import assert_that, equal_to  # noqa: E402

from mnist_batch import labels as label_names  # noqa: E402
from mnist_batch.cli import main as cli_main  # noqa: E402
from mnist_batch.models import load_keras_model  # noqa: E402
from mnist_batch.runstore.errors import RunStoreError  # noqa: E402
from mnist_batch.scoring import decode, listing, matching, sinks  # noqa: E402
from mnist_batch.scoring.errors import ScoringError  # noqa: E402
from mnist_batch.scoring.labels import read_labels_csv  # noqa: E402
from mnist_batch.scoring.launch import run_scoring  # noqa: E402
from mnist_batch.scoring.pipeline import build_pipeline  # noqa: E402
from mnist_batch.scoring.read import expand_input, expand_inputs  # noqa: E402

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data

REPO = pathlib.Path(__file__).resolve().parents[1]


def small_export(sample_data, root: pathlib.Path, n_per_class: int = 3) -> dict[str, int]:
    """Writes n images per class as root/<label>/<i>.png; returns {path: label}."""
    test = sample_data.split("test")
    written = {}
    for label in range(10):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(test.labels == label)[:n_per_class]:
            path = root / str(label) / f"{i:05d}.png"
            Image.fromarray(test.images[i]).save(path)
            written[str(path)] = label
    return written


# --- DoFns on beam.Create --------------------------------------------------------------------


def test_classify_matches_filters_extensions_and_directories():
    metas = [FileMetadata(p, 1) for p in ("/a/7/x.PNG", "/a/notes.txt", "/a/dir/", "/a/y.jpeg", "/a/noext")]
    with BeamTestPipeline() as p:
        out = (
            p
            | apache_beam.Create(metas)
            | apache_beam.ParDo(matching.ClassifyMatchFn(("png", "jpeg"))).with_outputs("skipped", main="images")
        )
        assert_that(out.images | "Paths" >> apache_beam.Map(lambda m: m.path), equal_to(["/a/7/x.PNG", "/a/y.jpeg"]))
        assert_that(
            out.skipped,
            equal_to(
                [
                    ("/a/notes.txt", matching.SKIP_EXTENSION),
                    ("/a/dir/", listing.SKIP_DIRECTORY),
                    ("/a/noext", matching.SKIP_EXTENSION),
                ]
            ),
            label="CheckSkipped",
        )


def test_decode_fn_labels_from_folders_and_dead_letters_per_element(sample_data, tmp_path):
    written = small_export(sample_data, tmp_path / "imgs", n_per_class=1)
    bad = tmp_path / "imgs" / "3" / "bad.png"
    bad.write_bytes(b"not a png")
    unlabelled = tmp_path / "imgs" / "misc" / "u.png"
    unlabelled.parent.mkdir()
    Image.fromarray(sample_data.split("test").images[0]).save(unlabelled)
    paths = [*written, str(bad), str(unlabelled)]
    with BeamTestPipeline() as p:
        out = (
            p
            | apache_beam.Create(paths)
            | fileio.MatchAll()
            | fileio.ReadMatches()
            | apache_beam.ParDo(decode.DecodeImageFn(tuple("0123456789"), "run1")).with_outputs("errors", main="images")
        )
        keys = out.images | "Keys" >> apache_beam.Map(lambda kv: (kv[0].path, kv[0].true_label, kv[0].blank))
        expected = [(path, label, False) for path, label in written.items()] + [(str(unlabelled), None, False)]
        assert_that(keys, equal_to(expected))
        errors = out.errors | "ErrorKeys" >> apache_beam.Map(lambda r: (r["path"], r["stage"], r["run_id"]))
        assert_that(errors, equal_to([(str(bad), "decode", "run1")]), label="CheckErrors")


def test_decode_fn_on_a_cluster_keeps_its_files_done_in_a_progress_file(sample_data, tmp_path):
    """Each worker instance's count, failed files included, is in <staging>/_progress/ when its bundles finish."""
    from mnist_batch.scoring.progress import progress_dir, reported

    written = small_export(sample_data, tmp_path / "imgs", n_per_class=1)
    bad = tmp_path / "imgs" / "3" / "bad.png"
    bad.write_bytes(b"not a png")
    folder = progress_dir(str(tmp_path / "_staging" / "r1.a"))
    fn = decode.DecodeGroupFn(tuple("0123456789"), "run1", progress_dir=folder)
    with BeamTestPipeline() as p:
        files = p | apache_beam.Create([*written, str(bad)]) | fileio.MatchAll() | fileio.ReadMatches()
        _ = files | decode.DecodeImages(fn, group_size=4)
    assert reported(folder).files == len(written) + 1
    assert all(name.endswith(".json") for name in (p.name for p in pathlib.Path(folder).iterdir()))


def test_label_helpers_and_labels_csv(tmp_path):
    assert label_names.parent_name("gs://b/x/7/a.png") == "7"
    assert label_names.label_from_name("Sneaker", ("T-shirt/top", "Sneaker")) == 1
    assert label_names.label_from_name("1", ("a", "b")) == 1
    assert label_names.label_from_name("2", ("a", "b")) is None
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\nimgs/a.png,7\n/abs/b.png,3\n", encoding="utf-8")
    labels = read_labels_csv(str(csv_path), tuple("0123456789"))
    assert labels["/abs/b.png"] == 3 and labels["imgs/a.png"] == 7
    csv_path.write_text("a.png,eleven\n", encoding="utf-8")
    with pytest.raises(ScoringError, match="labels.csv:1: label 'eleven'"):
        read_labels_csv(str(csv_path), tuple("0123456789"))


def test_expand_inputs(tmp_path):
    (tmp_path / "d").mkdir()
    listing = tmp_path / "list.txt"
    listing.write_text(f"# inputs\n{tmp_path / 'd'}\n{tmp_path}/*.png\n", encoding="utf-8")
    assert expand_input(str(tmp_path / "d")) == [str(tmp_path / "d" / "**")]
    assert expand_input("gs://bucket/scans/") == ["gs://bucket/scans/**"]
    assert expand_inputs([f"@{listing}", str(tmp_path / "d")]) == [str(tmp_path / "d" / "**"), f"{tmp_path}/*.png"]


# --- build_pipeline under TestPipeline -------------------------------------------------------


@pytest.mark.slow
def test_build_pipeline_outputs(tiny_model, sample_data, tmp_path):
    written = small_export(sample_data, tmp_path / "imgs", n_per_class=2)
    (tmp_path / "imgs" / "notes.txt").write_text("skip me", encoding="utf-8")
    (tmp_path / "imgs" / "5" / "broken.png").write_bytes(b"\x89PNG broken")
    model = load_keras_model(tiny_model)
    ordered = sorted(written)
    pixels = np.stack([np.asarray(Image.open(p)) for p in ordered])
    expected_pred = np.asarray(model(normalize(pixels), training=False)).argmax(axis=1)
    expected = [(p, written[p], int(k)) for p, k in zip(ordered, expected_pred, strict=True)]
    config = ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "imgs"),), output=str(tmp_path / "out"))
    with BeamTestPipeline() as p:
        out = build_pipeline(p, config)
        rows = out.predictions | "Rows" >> apache_beam.FlatMap(lambda table: table.to_pylist())
        triples = rows | apache_beam.Map(lambda r: (r["path"], r["true_label"], r["predicted_label"]))
        assert_that(triples, equal_to(expected))
        assert_that(
            out.errors | "ErrorPaths" >> apache_beam.Map(lambda r: (r["path"], r["stage"])),
            equal_to([(str(tmp_path / "imgs" / "5" / "broken.png"), "decode")]),
            label="CheckErrors",
        )
        assert_that(out.confusion | apache_beam.combiners.Count.Globally(), equal_to([100]), label="CheckCells")
        cm = np.zeros((10, 10), int)
        for _, t, k in expected:
            cm[t, k] += 1
        assert_that(
            out.confusion
            | "NonZeroCells" >> apache_beam.Filter(lambda r: r["count"] > 0)
            | "Cells" >> apache_beam.Map(lambda r: (r["true_label"], r["predicted_label"], r["count"])),
            equal_to([(t, k, int(cm[t, k])) for t in range(10) for k in range(10) if cm[t, k]]),
            label="CheckConfusion",
        )
        assert_that(
            out.stats
            | apache_beam.Map(lambda s: (s["counts"]["matched"], s["counts"]["scored"], s["counts"]["errors"])),
            equal_to([(21, 20, 1)]),
            label="CheckCounts",
        )
        assert_that(
            out.skipped, equal_to([(str(tmp_path / "imgs" / "notes.txt"), matching.SKIP_EXTENSION)]), label="Sk"
        )


def test_build_pipeline_fails_before_reading_on_empty_pattern(tiny_model, tmp_path):
    config = ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "nothing" / "*.png"),), output=str(tmp_path))
    with pytest.raises(ScoringError, match=r"nothing/\*\.png matches no files"):
        build_pipeline(apache_beam.Pipeline(), config)


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_test_split(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "test_images"
    export_images(sample_data, "test", root)
    return root


@pytest.fixture(scope="module")
def scored_test_split(tiny_model, exported_test_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored") / "out"
    summary = run_scoring(
        ScoreConfig(model=str(tiny_model), inputs=(str(exported_test_split),), output=str(out), run_id="passthrough")
    )
    return out, summary


@pytest.mark.slow
def test_whole_exported_test_split_scores_as_the_model_on_the_training_arrays(
    tiny_model, sample_data, scored_test_split
):
    """Pass-through: each exported PNG is scored exactly as the model scores normalize(array)."""
    out, summary = scored_test_split
    test = sample_data.split("test")
    table = pq.read_table(out / "predictions").to_pydict()
    assert len(table["path"]) == 2000 == summary["counts"]["scored"] == summary["counts"]["matched"]
    index = np.array([int(pathlib.Path(p).stem) for p in table["path"]])
    model = load_keras_model(tiny_model)
    expected = np.asarray(model(normalize(test.images[index]), training=False))
    probabilities = np.asarray(table["probabilities"], dtype=np.float32)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(table["predicted_label"]), expected.argmax(axis=1))
    np.testing.assert_array_equal(np.asarray(table["true_label"]), test.labels[index])
    accuracy = float((expected.argmax(axis=1) == test.labels[index]).mean())
    assert summary["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert summary["counts"]["skipped"] == 2  # EXPORT.json and classes.txt
    assert summary["skipped_by_reason"] == {matching.SKIP_EXTENSION: 2}
    assert summary["exit_code"] == 0 and summary["run_id"] == "passthrough"


def test_outputs_read_together_as_parquet_datasets(scored_test_split, tiny_model):
    out, summary = scored_test_split
    for table, schema in sinks.TABLES.items():
        dataset = pads.dataset(out / table, format="parquet")
        assert dataset.schema.equals(schema, check_metadata=False), table
    predictions = pads.dataset(out / "predictions", format="parquet").to_table()
    assert predictions.num_rows == 2000
    assert set(predictions.column("model_id").to_pylist()) == {summary["model_id"]}
    confusion = pq.read_table(out / "confusion")
    assert confusion.num_rows == 100 and sum(confusion.column("count").to_pylist()) == 2000
    per_class = pq.read_table(out / "per_class").to_pydict()
    assert per_class["support"] == np.bincount(predictions.column("true_label").to_numpy(), minlength=10).tolist()
    assert np.mean(per_class["f1"]) == pytest.approx(summary["macro_f1"])
    pd = pytest.importorskip("pandas")
    frame = pd.read_parquet(out / "predictions")
    assert len(frame) == 2000 and frame["predicted_class"].isin([str(d) for d in range(10)]).all()
    errors = pd.read_parquet(out / "errors")
    assert list(errors.columns) == [f.name for f in sinks.ERRORS_SCHEMA] and len(errors) == 0
    joined = frame.merge(pd.read_parquet(out / "per_class"), left_on="true_label", right_on="label")
    assert len(joined) == 2000
    summary_file = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary_file["counts"] == summary["counts"]
    assert summary["metrics"]["scored"] == 2000 and summary["metrics"]["files_matched"] == 2000
    assert summary_file["runner"] == "DirectRunner" and summary_file["wall_time_s"] > 0
    # The summary is written once, inside the job, and the commit marker last with the same content.
    assert json.loads((out / "_SUCCESS").read_text(encoding="utf-8")) == summary_file
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", *sorted(sinks.TABLES), "summary.json"]


@pytest.mark.slow
def test_refuses_to_mix_runs_unless_overwrite(tiny_model, sample_data, tmp_path):
    small_export(sample_data, tmp_path / "imgs", n_per_class=1)
    config = ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "imgs"),), output=str(tmp_path / "out"))
    run_scoring(config)
    with pytest.raises(RunStoreError, match="earlier run's outputs"):
        run_scoring(config)
    (tmp_path / "out" / "predictions" / "stale.parquet").write_bytes(b"old")
    import dataclasses

    summary = run_scoring(dataclasses.replace(config, overwrite=True))
    assert summary["counts"]["scored"] == 10
    assert not (tmp_path / "out" / "predictions" / "stale.parquet").exists()
    assert pq.read_table(tmp_path / "out" / "predictions").num_rows == 10


def test_class_names_from_the_card_and_labels_csv(tiny_model, sample_data, tmp_path):
    """A Fashion-style card: predictions carry its class names; true labels come from a CSV."""
    import dataclasses
    import shutil

    from mnist_batch.model_card import read_card, write_card

    fashion = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    model = tmp_path / "fashion.keras"
    shutil.copy(tiny_model, model)
    write_card(dataclasses.replace(read_card(tiny_model), class_names=fashion), model)
    test = sample_data.split("test")
    rows = ["path,label"]
    (tmp_path / "flat").mkdir()
    for i in range(12):
        path = tmp_path / "flat" / f"img{i}.png"
        Image.fromarray(test.images[i]).save(path)
        rows.append(f"{path},{fashion[test.labels[i]]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    summary = run_scoring(
        ScoreConfig(
            model=str(model),
            inputs=(str(tmp_path / "flat"),),
            output=str(tmp_path / "out"),
            labels_csv=str(tmp_path / "labels.csv"),
        )
    )
    table = pq.read_table(tmp_path / "out" / "predictions").to_pydict()
    assert all(c == fashion[k] for c, k in zip(table["predicted_class"], table["predicted_label"], strict=True))
    by_name = {pathlib.Path(p).name: t for p, t in zip(table["path"], table["true_class"], strict=True)}
    assert by_name == {f"img{i}.png": fashion[test.labels[i]] for i in range(12)}
    assert summary["counts"]["labelled"] == 12 and summary["class_names"] == list(fashion)


@pytest.mark.slow
def test_scan_like_images_are_scored_correctly(tiny_model, sample_data, tmp_path):
    """Scans made from real test digits (200x260, dark on light, paper texture, off-centre)."""
    rng = np.random.default_rng(11)
    test = sample_data.split("test")
    n = 300
    scans = [scoring_fixtures.scan_like(test.images[i], rng) for i in range(n)]
    model = load_keras_model(tiny_model)

    def accuracy(images):
        return float(
            (np.asarray(model(normalize(np.stack(images)), training=False)).argmax(1) == test.labels[:n]).mean()
        )

    mnist_style = accuracy([to_mnist(s).pixels for s in scans])
    naive = accuracy([np.asarray(Image.fromarray(s).resize((28, 28), Image.Resampling.BILINEAR)) for s in scans])
    original = accuracy(list(test.images[:n]))
    assert mnist_style >= original - 0.05, (mnist_style, original)
    assert naive <= 0.3, naive
    # And through the pipeline, as JPEG files.
    for i, scan in enumerate(scans[:40]):
        folder = tmp_path / "scans" / str(test.labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scan).save(folder / f"scan{i}.jpg", quality=85)
    summary = run_scoring(
        ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "scans"),), output=str(tmp_path / "o"))
    )
    assert summary["counts"]["scored"] == 40 and summary["accuracy"] >= 0.8


# --- command line ----------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_scores_and_reports(tiny_model, sample_data, tmp_path, capsys):
    small_export(sample_data, tmp_path / "imgs", n_per_class=2)
    code = cli_main(
        ["score", "--model", str(tiny_model), "--input", str(tmp_path / "imgs"), "--output", str(tmp_path / "out")]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "scored 20 of 20 images" in captured.out and "accuracy" in captured.out
    assert str(tmp_path / "out") in captured.out


def test_cli_errors_are_one_line_exit_2(tiny_model, tmp_path, capsys):
    code = cli_main(["score", "--model", str(tiny_model), "--input", str(tmp_path / "none"), "--output", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("mnist-batch: error: --input:") and "matches no files" in err and err.count("\n") == 1
    code = cli_main(
        ["score", "--model", str(tmp_path / "x.keras"), "--input", str(tmp_path), "--output", str(tmp_path / "o")]
    )
    assert code == 2 and "no such model file" in capsys.readouterr().err
    code = cli_main(
        ["score", "--model", str(tiny_model), "--input", str(tmp_path), "--output", "o", "--review-threshold", "2"]
    )
    assert code == 2 and "--review-threshold must be in [0, 1]" in capsys.readouterr().err  # the flag, not the field
    code = cli_main(
        ["score", "--model", str(tiny_model), "--input", str(tmp_path), "--output", "o", "--review_threshold", "0.5"]
    )
    assert (
        code == 2 and "unknown option --review_threshold (did you mean --review-threshold?)" in capsys.readouterr().err
    )
    code = cli_main(["score", "--model", str(tiny_model), "--input", str(tmp_path), "--output", "o", "--runer", "X"])
    assert code == 2 and "unknown option --runer" in capsys.readouterr().err


@pytest.mark.slow
def test_pipelines_entry_point_scores(tiny_model, sample_data, tmp_path):
    small_export(sample_data, tmp_path / "imgs", n_per_class=1)
    import importlib.util

    spec = importlib.util.spec_from_file_location("pipelines_score", REPO / "pipelines" / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pipeline_main = module.main
    out = tmp_path / "out"
    code = pipeline_main(["--model", str(tiny_model), "--input", str(tmp_path / "imgs"), "--output", str(out)])
    assert code == 0 and pq.read_table(out / "predictions").num_rows == 10
    assert pipeline_main(["--model", str(tiny_model), "--input", str(tmp_path / "nope"), "--output", str(out)]) == 2


@pytest.mark.slow
def test_scoring_never_imports_training():
    code = (
        "import sys\n"
        "import mnist_batch.scoring.pipeline, mnist_batch.scoring.handler, mnist_batch.cli.score_cmd\n"
        "import pipelines.score\n"
        "bad = sorted(m for m in sys.modules if m.startswith('mnist_batch.training'))\n"
        "assert not bad, bad\n"
        "assert 'tensorflow_hub' not in sys.modules and 'apache_beam.ml.inference.tensorflow_inference' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "mnist_batch" / "scoring").glob("*.py"))
    assert "mnist_batch.training" not in sources.replace("never imports :mod:`mnist_batch.training`", "")


@pytest.mark.parametrize(
    ("args", "reshuffled"),
    [
        ([], False),  # the in-memory DirectRunner: one process, nothing to spread
        (["--direct_running_mode", "in_memory"], False),
        (["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"], True),
        (["--runner", "PortableRunner", "--job_endpoint", "localhost:1"], True),  # Flink, Spark
    ],
)
def test_files_are_reshuffled_on_every_runner_with_workers(tiny_model, tmp_path, args, reshuffled):
    from apache_beam.options.pipeline_options import PipelineOptions

    (tmp_path / "imgs").mkdir()
    Image.new("L", (28, 28), 0).save(tmp_path / "imgs" / "a.png")
    config = ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "imgs"),), output=str(tmp_path / "out"))
    p = apache_beam.Pipeline(options=PipelineOptions(args))
    build_pipeline(p, config)
    names = {t.unique_name for t in p.to_runner_api().components.transforms.values()}
    assert ("MatchImageFiles/Reshuffle/Reshuffle" in names) is reshuffled


def test_files_travel_between_stages_as_plain_tuples_not_pickles():
    """The listing is kept encoded while the file count is made: a compact coder keeps that small."""
    from apache_beam.io import fileio
    from apache_beam.io.filesystem import FileMetadata

    coder = apache_beam.coders.registry.get_coder(fileio.ReadableFile)
    assert isinstance(coder, decode.ReadableFileCoder)
    odd = fileio.ReadableFile(FileMetadata("/in [a]{b}*?/ü 1.png", 1234, 1700000000.5))
    back = coder.decode(coder.encode(odd))
    assert type(back) is fileio.ReadableFile and back.metadata == odd.metadata
    loaded = coder.decode(coder.encode(decode.LoadedFile(FileMetadata("/x.png", 3, 1.0), b"abc")))
    assert isinstance(loaded, decode.LoadedFile) and loaded.read() == b"abc"
    import pickle

    assert len(coder.encode(odd)) < len(pickle.dumps(odd)) / 3


@pytest.mark.slow
def test_a_labels_csv_replaces_the_folder_labels_and_says_so(tiny_model, sample_data, tmp_path, capsys):
    from mnist_batch.cli import main as cli_main

    scoring_fixtures.write_train_digits(sample_data, tmp_path / "in", 6)
    first = sorted((tmp_path / "in").rglob("*.png"))[:4]
    rows = ["path,label", *(f"{p},{(int(p.parent.name) + 1) % 10}" for p in first)]  # labels unlike the folders'
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    argv = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert cli_main([*argv, "--labels-csv", str(tmp_path / "labels.csv")]) == 0
    out = capsys.readouterr().out
    assert f"labels: from --labels-csv {tmp_path / 'labels.csv'}: 4 of 6 scored images have a row there" in out
    table = pq.read_table(tmp_path / "out" / "predictions").to_pydict()
    by_path = dict(zip(table["path"], table["true_label"], strict=True))
    assert [by_path[str(p)] for p in first] == [(int(p.parent.name) + 1) % 10 for p in first]
    assert sum(v is None for v in by_path.values()) == 2  # not in the CSV: unlabelled, not the folder's label
