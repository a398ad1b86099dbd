"""The fast runtime: a LiteRT file made at export, recorded in the card, chosen by --runtime, checked on workers."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from mnist_batch.cli import main as cli_main
from mnist_batch.config import ScoreConfig
from mnist_batch.model_card import card_path, file_sha256, read_card, write_card
from mnist_batch.models import ModelError, Predictor, choose_runtime
from mnist_batch.models import runtimes as runtimes_module
from mnist_batch.models.artifacts import agreement
from mnist_batch.training.export import ExportError, add_runtime

import scoring_fixtures

REPO = pathlib.Path(__file__).resolve().parents[1]
tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data


def copy_model(src: pathlib.Path, folder: pathlib.Path) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in (src, card_path(src), src.with_suffix(".tflite")):
        if f.is_file():
            shutil.copyfile(f, folder / f.name)
    return folder / src.name


@pytest.fixture(scope="module")
def fast_model(tiny_model, tmp_path_factory) -> pathlib.Path:
    """The tiny model with its LiteRT file made by `mnist-batch export` (measured on the sample's test split)."""
    model = copy_model(tiny_model, tmp_path_factory.mktemp("fast"))
    assert cli_main(["export", str(model)]) == 0
    return model


@pytest.fixture(scope="module")
def png_folder(sample_data, tmp_path_factory) -> pathlib.Path:
    """300 real test digits (spread over the split, every class) as PNG files under <label>/."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("pngs")
    test = sample_data.splits["test"]
    for i in np.linspace(0, len(test) - 1, 300).round().astype(int):
        (folder / str(test.labels[i])).mkdir(exist_ok=True)
        Image.fromarray(test.images[i]).save(folder / str(test.labels[i]) / f"{i:04d}.png")
    return folder


@pytest.mark.slow
def test_export_writes_the_file_and_records_its_sha256_and_agreement(fast_model, sample_data):
    card = read_card(fast_model)
    entry = card.runtimes["litert"]
    tflite = fast_model.with_suffix(".tflite")
    assert entry["file"] == tflite.name and entry["sha256"] == file_sha256(tflite)
    assert entry["bytes"] == tflite.stat().st_size
    a = entry["agreement"]
    assert a["split"] == "test" and a["examples"] == len(sample_data.splits["test"]) == 2000
    assert a["argmax_agreement"] >= 0.999 and a["disagreements"] <= 2
    assert 0 < a["max_abs_diff"] < 0.1  # int8 weights: close to Keras, not bit-identical
    # The recorded figures are what the two runtimes say on the real test split, recomputed here.
    test = sample_data.splits["test"]
    keras_p = Predictor.load(str(fast_model), card.model_id)(test.images)
    fast_p = Predictor.load(str(tflite), entry["sha256"], runtime="litert")(test.images)
    assert agreement(keras_p, fast_p, test.labels) == {k: v for k, v in a.items() if k != "split"}
    assert abs(a["accuracy"] - a["keras_accuracy"]) <= 0.001


def test_export_again_gives_the_same_file(fast_model, tmp_path):
    model = copy_model(fast_model, tmp_path)
    before = file_sha256(model.with_suffix(".tflite"))
    assert cli_main(["export", str(model)]) == 0
    assert file_sha256(model.with_suffix(".tflite")) == before == read_card(model).runtimes["litert"]["sha256"]


def other_classes_npz(sample_data, folder: pathlib.Path) -> pathlib.Path:
    """The sample's real digits under ten other class names (an npz + classes.txt): needs no system package."""
    train, test = sample_data.splits["train"], sample_data.splits["test"]
    path = folder / "renamed.npz"
    np.savez(path, x_train=train.images, y_train=train.labels, x_test=test.images, y_test=test.labels)
    (folder / "classes.txt").write_text("".join(f"class-{c}\n" for c in "abcdefghij"), encoding="utf-8")
    return path


def test_export_refuses_data_with_other_classes_or_another_test_split(fast_model, sample_data, tmp_path, capsys):
    model = copy_model(fast_model, tmp_path / "model")
    assert cli_main(["export", str(model), "--dataset", f"npz:{other_classes_npz(sample_data, tmp_path)}"]) == 2
    assert "differ from the model's" in capsys.readouterr().err
    card = read_card(model)
    write_card(dataclasses.replace(card, split_sizes={"test": 1234}), model)
    with pytest.raises(ExportError, match="the card recorded 1,234"):
        add_runtime(model, "litert")


def test_litert_scores_each_image_the_same_whatever_its_group(fast_model, sample_data):
    card = read_card(fast_model)
    fast = Predictor.load(str(fast_model.with_suffix(".tflite")), card.runtimes["litert"]["sha256"], runtime="litert")
    images = sample_data.splits["test"].images[:300]
    whole = fast(images)
    alone = np.concatenate([fast(images[i : i + 1]) for i in range(40)])
    odd = np.concatenate([fast(images[i : i + 37]) for i in range(0, 296, 37)])
    np.testing.assert_array_equal(whole[:40], alone)
    np.testing.assert_array_equal(whole[:296], odd)


def test_litert_in_chunks_gives_the_outputs_of_one_whole_batch_call(fast_model, sample_data):
    """The runtime calls the interpreter LITERT_CHUNK images at a time (cheaper per image than one
    call of 256): bitwise what one call of the whole batch gives, remainders and two threads included,
    with a bounded number of interpreters per thread."""
    import concurrent.futures

    data = fast_model.with_suffix(".tflite").read_bytes()
    x = sample_data.splits["test"].images[:300].astype(np.float32)[..., None] / 255.0
    whole = runtimes_module.LiteRTCall(data, 1, chunk=300)(x)
    chunked = runtimes_module.LiteRTCall(data, 1)
    assert runtimes_module.LITERT_CHUNK < 300
    np.testing.assert_array_equal(chunked(x), whole)
    for size in (1, 7, 16, 17, 255):
        np.testing.assert_array_equal(chunked(x[:size]), whole[:size])
    assert chunked(x[:0]).shape == (0, whole.shape[1])
    assert sorted(chunked._local.kept) == [1, 2, 4, 8, 16]  # the chunk and the powers of two below it
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outputs = list(pool.map(chunked, [x[:150], x[150:]]))
    np.testing.assert_array_equal(np.concatenate(outputs), whole)


def test_the_decode_helper_scores_its_groups_bitwise_as_the_caller(fast_model, png_folder, tmp_path):
    """Given the model, the helper returns each group with the outputs the caller's own call gives;
    a model it cannot load leaves the call to the caller; a failed call is the group's model_failure."""
    from mnist_batch.scoring import decode_pool, helper_model

    card = read_card(fast_model)
    data = fast_model.with_suffix(".tflite").read_bytes()
    fast = Predictor.load(str(fast_model.with_suffix(".tflite")), card.runtimes["litert"]["sha256"], runtime="litert")
    (tmp_path / "text.png").write_text("not an image")
    sources = [(str(p), None) for p in sorted(png_folder.rglob("*.png"))[:100]] + [(str(tmp_path / "text.png"), None)]
    here = decode_pool.decode_group(sources, 1_000_000, 10_000_000)
    for model, expect_outputs in (
        (helper_model.HelperModel("litert", data), True),
        (helper_model.HelperModel("litert", b"junk"), False),
    ):
        pool = scoring_fixtures.started_pool(model=model)
        try:
            pool.submit(sources, "all")
            ((_, there),) = pool.drain()
        finally:
            pool.close()
        assert there.ok == here.ok and there.failed == here.failed and there.model_failure is None
        if expect_outputs:
            np.testing.assert_array_equal(there.outputs, fast(here.pixels))
            assert there.pixels.shape == (0, 28, 28)  # not sent back: the caller needs the outputs only
        else:
            np.testing.assert_array_equal(there.pixels, here.pixels)
            assert there.outputs is None  # the caller runs the model on this group

    def broken(x):
        raise RuntimeError("interpreter failed")

    failed = helper_model.run_model(here, broken)
    assert failed.outputs is None and failed.model_failure == ("RuntimeError", "interpreter failed")
    assert failed.ok == here.ok and failed.pixels.shape == (0, 28, 28)


def test_in_process_runs_with_the_scoring_helper_write_the_beam_jobs_predictions(
    fast_model, png_folder, tmp_path, monkeypatch
):
    """The in-process job with its helper scoring groups too (the helper waited for, so it does):
    the predictions are those of the Beam job, bitwise."""
    from mnist_batch.inprocess import job
    from mnist_batch.scoring import decode_pool

    pools = []

    class StartedPool(decode_pool.DecodePool):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self)
            deadline = time.monotonic() + 30
            while self.helper_pid is None and time.monotonic() < deadline:
                time.sleep(0.01)

    monkeypatch.setattr(job, "DecodePool", StartedPool)
    tables = {}
    for engine in ("inprocess", "beam"):
        out = tmp_path / engine
        args = ["score", "--model", str(fast_model), "--input", str(png_folder), "--output", str(out)]
        assert cli_main([*args, "--engine", engine, "--max-batch-size", "8"]) == 0
        tables[engine] = pq.read_table(out / "predictions").sort_by("path").drop_columns(["run_id", "scored_at"])
    assert len(pools) == 1 and pools[0].decoded_there > 0  # groups the helper decoded and scored
    assert tables["inprocess"].num_rows == 300 and tables["inprocess"].equals(tables["beam"])


def test_the_helper_runs_the_model_only_with_one_core_per_process(fast_model, monkeypatch):
    """2 cores (one each for this process and its helper): the helper scores too, on one thread;
    more cores: this process keeps the model on its threads and the helper only decodes; Keras:
    never in the helper."""
    import types

    from mnist_batch.inprocess import job

    card = read_card(fast_model)
    tflite = types.SimpleNamespace(
        runtime="litert", uri=str(fast_model.with_suffix(".tflite")), model_id=card.runtimes["litert"]["sha256"]
    )
    run = types.SimpleNamespace(scorer=tflite)
    monkeypatch.setenv(runtimes_module.THREADS_ENV, "2")
    predictor, helper = job.load_scorer(run, 1)
    assert helper is not None and helper.data == fast_model.with_suffix(".tflite").read_bytes()
    assert predictor.model_id == tflite.model_id
    monkeypatch.setenv(runtimes_module.THREADS_ENV, "8")
    assert job.load_scorer(run, 1)[1] is None
    assert job.load_scorer(run, 0)[1] is None
    keras_run = types.SimpleNamespace(
        scorer=types.SimpleNamespace(runtime="keras", uri=str(fast_model), model_id=card.model_id)
    )
    monkeypatch.setenv(runtimes_module.THREADS_ENV, "2")
    assert job.load_scorer(keras_run, 1)[1] is None


def test_a_model_call_failing_in_the_helper_is_each_decoded_files_dead_letter(
    fast_model, png_folder, tmp_path, monkeypatch
):
    """An in-process run whose model calls fail, in the helper (groups come back with a
    model_failure) and in the scoring process (the first group): every decoded file is an
    ``inference`` error row with the call's error, none lost, exit 4 as for any all-failed run."""
    from mnist_batch.inprocess import job
    from mnist_batch.scoring import decode_pool

    class FailingHelper(decode_pool.DecodePool):
        def _failed(self, done):
            return [(tag, g._replace(model_failure=("RuntimeError", "interpreter failed"))) for tag, g in done]

        def ready(self):
            return self._failed(super().ready())

        def drain(self):
            return self._failed(super().drain())

    def failing_call(self, x):
        raise RuntimeError("interpreter failed")

    monkeypatch.setattr(job, "DecodePool", FailingHelper)
    monkeypatch.setattr(runtimes_module.LiteRTCall, "__call__", failing_call)
    out = tmp_path / "out"
    args = [
        "score",
        "--model",
        str(fast_model),
        "--input",
        str(png_folder),
        "--output",
        str(out),
        "--engine",
        "inprocess",
    ]
    assert cli_main([*args, "--max-batch-size", "8"]) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["errors"] == 300 and summary["errors_by_stage"] == {"inference": 300}
    errors = pq.read_table(out / "errors").to_pylist()
    assert len(errors) == 300 and {(e["stage"], e["error_type"], e["message"]) for e in errors} == {
        ("inference", "RuntimeError", "interpreter failed")
    }


def test_auto_takes_litert_only_when_recorded_agreement_is_high_enough(fast_model, tiny_model, tmp_path):
    card = read_card(fast_model)
    chosen = choose_runtime(str(fast_model), card, "auto")
    assert chosen.runtime == "litert" and chosen.model_id == card.runtimes["litert"]["sha256"]
    assert chosen.uri == str(fast_model.with_suffix(".tflite")) and ">= 99.9%" in chosen.reason

    low = copy_model(fast_model, tmp_path / "low")
    entry = json.loads(json.dumps(card.runtimes["litert"]))
    entry["agreement"]["argmax_agreement"] = 0.998
    write_card(dataclasses.replace(card, runtimes={"litert": entry}), low)
    chosen = choose_runtime(str(low), read_card(low), "auto")
    assert chosen.runtime == "keras" and chosen.model_id == card.model_id and "99.80%" in chosen.reason
    assert choose_runtime(str(low), read_card(low), "litert").runtime == "litert"  # asked for: allowed

    chosen = choose_runtime(str(tiny_model), read_card(tiny_model), "auto")
    assert chosen.runtime == "keras" and "no litert artifact" in chosen.reason
    with pytest.raises(ModelError, match="records no litert artifact; make it with `mnist-batch export"):
        choose_runtime(str(tiny_model), read_card(tiny_model), "litert")
    with pytest.raises(ModelError, match="unknown --runtime"):
        choose_runtime(str(fast_model), card, "onnx")
    with pytest.raises(ValueError, match="runtime must be one of"):
        ScoreConfig(model=str(fast_model), inputs=("x",), output="o", runtime="onnx")


def test_without_the_package_auto_keeps_keras_and_litert_says_what_to_install(fast_model, monkeypatch):
    monkeypatch.setattr(runtimes_module.Runtime, "available", lambda self: False)
    card = read_card(fast_model)
    chosen = choose_runtime(str(fast_model), card, "auto")
    assert chosen.runtime == "keras" and "ai-edge-litert is not installed" in chosen.reason
    with pytest.raises(ModelError, match="pip install ai-edge-litert"):
        choose_runtime(str(fast_model), card, "litert")


def test_a_replaced_or_damaged_artifact_is_refused_before_any_input(fast_model, tmp_path, capsys):
    model = copy_model(fast_model, tmp_path)
    tflite = model.with_suffix(".tflite")
    tflite.write_bytes(tflite.read_bytes()[:1000])
    with pytest.raises(ModelError, match="does not match the card's litert sha256"):
        choose_runtime(str(model), read_card(model), "auto")
    code = cli_main(["score", "--model", str(model), "--input", str(tmp_path), "--output", str(tmp_path / "o")])
    assert code == 2 and "does not match the card's litert sha256" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    entry = read_card(model).runtimes["litert"]
    entry["sha256"] = file_sha256(tflite)  # a card that vouches for a damaged file: loading it fails, one line
    write_card(dataclasses.replace(read_card(model), runtimes={"litert": entry}), model)
    with pytest.raises(ModelError, match=r"cannot load the litert model"):
        choose_runtime(str(model), read_card(model), "auto")
    tflite.unlink()  # copied without it: litert asked for, one line that says what to do
    with pytest.raises(ModelError, match=r"no such model file \(the card records this litert file: copy it"):
        choose_runtime(str(model), read_card(model), "litert")
    chosen = choose_runtime(str(model), read_card(model), "auto")  # auto: the .keras file scores, and says why
    assert chosen.runtime == "keras" and chosen.model_id == read_card(model).model_id
    assert chosen.reason == f"the card's litert file {tflite} is absent (model copied without it)"


def test_auto_scores_with_keras_when_the_runtime_file_was_not_copied(fast_model, png_folder, tmp_path, capsys):
    model = copy_model(fast_model, tmp_path / "copy")
    model.with_suffix(".tflite").unlink()
    base = ["score", "--model", str(model), "--input", str(png_folder)]
    assert cli_main([*base, "--output", str(tmp_path / "auto")]) == 0
    out = capsys.readouterr().out
    reason = f"the card's litert file {model.with_suffix('.tflite')} is absent (model copied without it)"
    assert f"runtime: keras ({reason})" in out
    summary = json.loads((tmp_path / "auto" / "summary.json").read_text())
    assert summary["runtime"] == "keras" and summary["runtime_reason"] == reason
    assert summary["counts"]["scored"] == 300 and summary["runtime_model_id"] == read_card(model).model_id
    rows = pq.read_table(tmp_path / "auto" / "predictions", columns=["model_id"]).to_pydict()["model_id"]
    assert set(rows) == {read_card(model).model_id}
    assert cli_main([*base, "--output", str(tmp_path / "strict"), "--runtime", "litert"]) == 2
    assert "copy it beside the model, or pass --runtime keras" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists()


@pytest.mark.slow
def test_score_uses_litert_by_default_and_rows_name_the_file_that_scored_them(fast_model, png_folder, tmp_path):
    card = read_card(fast_model)
    out = {}
    for runtime in ("auto", "keras"):
        out[runtime] = tmp_path / runtime
        args = ["score", "--model", str(fast_model), "--input", str(png_folder), "--output", str(out[runtime])]
        assert cli_main([*args, "--runtime", runtime]) == 0
    summary = json.loads((out["auto"] / "summary.json").read_text())
    assert summary["runtime"] == "litert" and summary["model_id"] == card.model_id
    assert summary["runtime_model_id"] == card.runtimes["litert"]["sha256"]
    assert summary["runtime_agreement"]["argmax_agreement"] >= 0.999
    assert json.loads((out["keras"] / "summary.json").read_text())["runtime"] == "keras"
    fast = pq.read_table(out["auto"] / "predictions").to_pandas().sort_values("path").reset_index(drop=True)
    slow = pq.read_table(out["keras"] / "predictions").to_pandas().sort_values("path").reset_index(drop=True)
    assert len(fast) == len(slow) == 300
    # The model's identity in model_id (joins summary.json and the runs table), the file that scored beside it.
    assert set(fast["runtime_model_id"]) == {card.runtimes["litert"]["sha256"]}
    assert set(fast["model_id"]) == set(slow["model_id"]) == set(slow["runtime_model_id"]) == {card.model_id}
    assert (fast["predicted_label"] == slow["predicted_label"]).mean() >= 0.99
    diff = np.abs(np.stack(fast["probabilities"]) - np.stack(slow["probabilities"])).max()
    assert diff <= card.runtimes["litert"]["agreement"]["max_abs_diff"] + 0.05


@pytest.mark.slow
def test_scoring_with_litert_never_imports_tensorflow(fast_model, png_folder, tmp_path):
    """The fast path starts without TensorFlow (seconds of start-up and ~600 MB of memory saved)."""
    code = (
        "import sys\nfrom mnist_batch.cli import main\n"
        f"rc = main(['score', '--model', {str(fast_model)!r}, '--input', {str(png_folder)!r}, "
        f"'--output', {str(tmp_path / 'o')!r}, '-q'])\n"
        "assert rc == 0, rc\nprint('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "False False"


def test_an_artifact_swapped_after_the_check_fails_the_run_uncommitted(
    fast_model, png_folder, tmp_path, monkeypatch, capsys
):
    """Workers load only bytes with the checked sha256: another valid LiteRT file is refused, one line, exit 2."""
    model = copy_model(fast_model, tmp_path / "m")
    other = tmp_path / "other.tflite"
    shutil.copyfile(fast_model.with_suffix(".tflite"), other)
    with open(other, "ab") as f:
        f.write(b"\0" * 16)  # still a loadable flatbuffer, other bytes
    from mnist_batch.scoring import attempt  # the launch sequence both engines share

    real_choose = attempt.choose_runtime

    def choose_then_swap(uri, card, requested="auto"):
        scorer = real_choose(uri, card, requested)
        shutil.copyfile(other, scorer.uri)
        return scorer

    monkeypatch.setattr(attempt, "choose_runtime", choose_then_swap)
    root = tmp_path / "root"
    args = ["score", "--model", str(model), "--input", str(png_folder), "--output", str(root), "--layout", "runs"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"model {model.with_suffix('.tflite')} changed since it was checked" in err, err
    assert not list(root.rglob("_SUCCESS")) and not list(root.rglob("part-*.parquet"))


def test_predict_and_evaluate_take_the_runtime(fast_model, png_folder, tmp_path, capsys):
    image = str(sorted(png_folder.glob("7/*.png"))[0])
    lines = {}
    for runtime in ("litert", "keras"):
        assert cli_main(["predict", image, "--model", str(fast_model), "--runtime", runtime]) == 0
        lines[runtime] = capsys.readouterr().out.split("(confidence")[0]
    assert lines["litert"] == lines["keras"] == f"{image}: 7 "
    out = tmp_path / "eval"
    assert cli_main(["evaluate", "--model", str(fast_model), "--output", str(out), "--no-report"]) == 0
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()[0]
    card = read_card(fast_model)
    printed = capsys.readouterr().out  # evaluate says which runtime scored, by the file's id
    assert f"scored with litert (file sha256 {card.runtimes['litert']['sha256'][:12]}" in printed, printed
    assert metrics["runtime"] == "litert" and metrics["runtime_model_id"] == card.runtimes["litert"]["sha256"]
    assert metrics["accuracy"] == pytest.approx(card.runtimes["litert"]["agreement"]["accuracy"])
    rows = pq.read_table(out / "predictions.parquet", columns=["model_id", "runtime_model_id"]).to_pydict()
    # One meaning per column: model_id is the model (its card's id), runtime_model_id the file that scored.
    assert set(rows["runtime_model_id"]) == {card.runtimes["litert"]["sha256"]} and set(rows["model_id"]) == {
        card.model_id
    }


def test_train_keeps_its_export_when_the_runtime_file_cannot_be_made(tmp_path, monkeypatch, capsys):
    """Minutes of training are never lost to the optional fast file: a warning line, a card without it."""
    import keras

    from mnist_batch.models import runtimes as rt
    from mnist_batch.training.export import export_model

    def broken_convert(model, path):
        raise RuntimeError("converter crashed")

    monkeypatch.setitem(rt.RUNTIMES, "litert", dataclasses.replace(rt.RUNTIMES["litert"], convert=broken_convert))
    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    path, card = export_model(
        model,
        tmp_path / "m.keras",
        model_name="tiny",
        dataset="sample",
        class_names=tuple("0123456789"),
        split_sizes={},
        test_split=None,
        epochs=1,
        strategy="DefaultStrategy",
        replicas=1,
        wall_time_s=1.0,
        runtimes=("litert",),
    )
    assert path.is_file() and card.runtimes == {} and read_card(path).runtimes == {}
    err = capsys.readouterr().err
    assert "mnist-batch: warning:" in err and "converter crashed" in err and "--runtime keras" in err
    assert not list(tmp_path.glob("*.tflite")) and not list(tmp_path.glob(".*"))


@pytest.mark.slow
def test_a_model_on_an_object_store_scores_with_its_litert_file(fast_model, png_folder, tmp_path, monkeypatch):
    """Card, .keras and .tflite read through Beam's filesystems (fakestore://, an object store without folders)."""
    import fake_object_store

    monkeypatch.setitem(fake_object_store.ROOT, "path", str(tmp_path))
    bucket_model = copy_model(fast_model, tmp_path / "bucket" / "models")
    uri = fake_object_store.to_uri(str(bucket_model))
    out = tmp_path / "out"
    assert cli_main(["score", "--model", uri, "--input", str(png_folder), "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runtime"] == "litert" and summary["runtime_model"] == uri.removesuffix(".keras") + ".tflite"
    rows = pq.read_table(out / "predictions", columns=["model_id", "runtime_model_id"]).to_pydict()
    card = read_card(fast_model)
    assert len(rows["runtime_model_id"]) == 300 and set(rows["runtime_model_id"]) == {card.runtimes["litert"]["sha256"]}
    assert set(rows["model_id"]) == {card.model_id} == {summary["model_id"]}


def test_a_runtime_file_that_is_a_device_or_fifo_is_refused_not_read(fast_model, tmp_path):
    """A link to /dev/zero (or a FIFO) in the .tflite's place: one line, never an endless read."""
    model = copy_model(fast_model, tmp_path)
    tflite = model.with_suffix(".tflite")
    tflite.unlink()
    tflite.symlink_to("/dev/zero")
    with pytest.raises(ModelError, match=r"not a regular file \(character device\)"):
        choose_runtime(str(model), read_card(model), "auto")
    tflite.unlink()
    os.mkfifo(tflite)
    with pytest.raises(ModelError, match=r"not a regular file \(FIFO\)"):
        choose_runtime(str(model), read_card(model), "litert")
