"""``mnist-batch predict`` on PNG / JPEG / RGB / scan-like files made from real sample digits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mnist_batch.cli import main as cli_main
from mnist_batch.predict import Failure, Prediction, predict_files
from mnist_batch.preprocess import normalize, preprocess_bytes

import scoring_fixtures

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data

PICK = range(0, 2000, 97)  # 21 real test digits


@pytest.fixture(scope="module")
def files(sample_data, tmp_path_factory):
    """Each picked digit as gray PNG (MNIST format), RGB JPEG (dark on light) and a scan-like photo."""
    test = sample_data.split("test")
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(1)
    out = {"png": [], "rgb_jpeg": [], "scan": [], "labels": [], "digits": []}
    for i in PICK:
        digit = test.images[i]
        out["labels"].append(int(test.labels[i]))
        out["digits"].append(digit)
        Image.fromarray(digit).save(root / f"{i}.png")
        Image.merge("RGB", [Image.fromarray(255 - digit)] * 3).save(root / f"{i}_rgb.jpg", quality=92)
        Image.fromarray(scoring_fixtures.scan_like(digit, rng)).save(root / f"{i}_scan.png")
        out["png"].append(str(root / f"{i}.png"))
        out["rgb_jpeg"].append(str(root / f"{i}_rgb.jpg"))
        out["scan"].append(str(root / f"{i}_scan.png"))
    return out


@pytest.mark.slow
def test_mnist_format_png_gives_the_models_own_probabilities(tiny_model, files):
    import keras

    expected = keras.saving.load_model(tiny_model).predict(normalize(np.stack(files["digits"])), verbose=0)
    results = predict_files(str(tiny_model), files["png"])
    assert all(isinstance(r, Prediction) for r in results)
    np.testing.assert_allclose(np.stack([r.probabilities for r in results]), expected, atol=1e-5)
    r = results[0]
    assert r.top(3)[0] == (r.class_names[r.label], r.confidence)
    assert [p for _, p in r.top(3)] == sorted((p for _, p in r.top(3)), reverse=True)


@pytest.mark.parametrize("kind", ["rgb_jpeg", "scan"])
def test_jpeg_rgb_and_scan_like_files_are_recognised(tiny_model, files, kind):
    results = predict_files(str(tiny_model), files[kind])
    predicted = [r.label for r in results]
    accuracy = np.mean(np.array(predicted) == np.array(files["labels"]))
    assert accuracy >= 0.8, (kind, predicted, files["labels"])
    assert all(r.image.inverted for r in results)  # dark ink on light paper was detected


def test_cli_prints_class_confidence_top3_and_saves_what_the_model_saw(tiny_model, files, tmp_path, capsys):
    scan = files["scan"][0]
    seen = tmp_path / "seen.png"
    assert cli_main(["predict", scan, "--model", str(tiny_model), "--show-preprocessed", str(seen)]) == 0
    out = capsys.readouterr().out
    (result,) = predict_files(str(tiny_model), [scan])
    name, conf = result.class_names[result.label], result.confidence
    assert f"{scan}: {name} (confidence {conf:.4f})  top-3: {name} {conf:.4f}, " in out
    with open(scan, "rb") as f:
        expected = preprocess_bytes(f.read()).pixels
    saved = np.asarray(Image.open(seen))
    assert saved.shape == (28, 28)
    np.testing.assert_array_equal(saved, expected)


def test_bad_files_give_one_error_line_each_and_a_non_zero_exit(tiny_model, files, tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "empty.jpg").write_bytes(b"")
    args = [files["png"][0], str(tmp_path / "broken.png"), str(tmp_path / "missing.png"), str(tmp_path / "empty.jpg")]
    assert cli_main(["predict", *args, "--model", str(tiny_model)]) == 1
    captured = capsys.readouterr()
    assert captured.out.count(": ") >= 1 and files["png"][0] in captured.out
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3
    for line, name in zip(errors, ("broken.png", "missing.png", "empty.jpg"), strict=True):
        assert line.startswith("mnist-batch predict: error: ") and name in line
    assert "no such file" in errors[1] and "0 bytes" in errors[2]
    assert "BytesIO" not in captured.err
    results = predict_files(str(tiny_model), args)
    assert [type(r) for r in results] == [Prediction, Failure, Failure, Failure]


def test_a_bad_model_is_one_line_and_exit_2(files, tmp_path, capsys):
    assert cli_main(["predict", files["png"][0], "--model", str(tmp_path / "nope.keras")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.keras" in err[0]
