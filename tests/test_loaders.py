"""Loaders (npz, IDX, folder, Keras download cache) on generated files, good and bad."""

import gzip
import pathlib

import numpy as np
import pytest
from PIL import Image

from mnist_batch.constants import MNIST_CLASS_NAMES
from mnist_batch.data import load_dataset
from mnist_batch.data.idx import load_idx
from mnist_batch.data.npz import load_npz
from mnist_batch.errors import DataError

from conftest import idx_bytes, make_arrays, write_idx_dir, write_npz


def _all(dataset, part_names=("train", "validation")):
    """Concatenates the given splits back (order-insensitive check helper)."""
    images = np.concatenate([dataset.split(s).images for s in part_names])
    labels = np.concatenate([dataset.split(s).labels for s in part_names])
    return images, labels


def _same_multiset(a_images, a_labels, b_images, b_labels):
    def key(images, labels):
        return sorted(zip(labels.tolist(), [x.tobytes() for x in images], strict=True))

    return key(a_images, a_labels) == key(b_images, b_labels)


# ---- npz --------------------------------------------------------------------------------------


def test_npz_keras_layout_loads_all_splits(tmp_path):
    arrays = write_npz(tmp_path / "mnist.npz", n_train=120, n_test=30)
    ds = load_dataset(f"npz:{tmp_path / 'mnist.npz'}")
    assert ds.class_names == MNIST_CLASS_NAMES
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 110, "validation": 10, "test": 30}
    np.testing.assert_array_equal(ds.split("test").images, arrays["x_test"])
    assert _same_multiset(*_all(ds), arrays["x_train"], arrays["y_train"])
    assert ds.split("train").labels.dtype == np.uint8


def test_npz_accepts_int64_labels(tmp_path):
    x, y = make_arrays(24)
    np.savez(tmp_path / "m.npz", x_train=x, y_train=y.astype(np.int64), x_test=x, y_test=y.astype(np.int64))
    assert load_npz(tmp_path / "m.npz").split("test").labels.dtype == np.uint8


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"PK\x03\x04 this is not really a zip"), "not a readable .npz"),
        (lambda p: p.write_bytes(b""), "not a readable .npz"),
        (lambda p: np.savez(p, images=np.zeros((2, 28, 28), np.uint8)), "missing key"),
        (lambda p: write_npz(p, y_train=np.zeros(59, np.uint8)), "60 images but 59 labels"),
        (lambda p: write_npz(p, y_test=np.full(20, 10, np.uint8)), "label 10 out of range"),
        (lambda p: write_npz(p, y_test=np.full(20, -1, np.int64)), "label -1 out of range"),
        (lambda p: write_npz(p, x_train=np.zeros((60, 32, 32), np.uint8)), r"shape \(60, 32, 32\)"),
        (lambda p: write_npz(p, x_train=np.zeros((60, 28, 28), np.float32)), "dtype float32"),
        (lambda p: write_npz(p, y_train=np.zeros(60, np.float32)), "dtype float32"),
    ],
    ids=[
        "missing",
        "corrupt",
        "empty",
        "wrong-keys",
        "count-mismatch",
        "label-10",
        "label-neg",
        "shape",
        "x-dtype",
        "y-dtype",
    ],
)
def test_npz_bad_input_names_the_file(tmp_path, make, message):
    path = tmp_path / "mnist.npz"
    make(path)
    with pytest.raises(DataError, match=message) as info:
        load_npz(path)
    assert str(path) in str(info.value)


# ---- IDX --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_loads_raw_and_gzipped(tmp_path, gz):
    arrays = write_idx_dir(tmp_path, n_train=120, n_test=30, gz=gz)
    ds = load_idx(tmp_path)
    np.testing.assert_array_equal(ds.split("test").images, arrays["x_test"])
    np.testing.assert_array_equal(ds.split("test").labels, arrays["y_test"])
    assert _same_multiset(*_all(ds), arrays["x_train"], arrays["y_train"])


def test_idx_validation_split_is_stratified_and_stable(tmp_path):
    write_idx_dir(tmp_path, n_train=1200, n_test=10)
    a, b = load_idx(tmp_path), load_idx(tmp_path)
    assert len(a.split("validation")) == 100
    np.testing.assert_array_equal(np.bincount(a.split("validation").labels), [10] * 10)
    np.testing.assert_array_equal(a.split("validation").images, b.split("validation").images)


def test_idx_classes_txt_sets_class_names(tmp_path):
    write_idx_dir(tmp_path)
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    assert load_idx(tmp_path).class_names == tuple(names)


def _corrupt(directory: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    path = directory / name
    path.write_bytes(data)
    return path


IMG = "train-images-idx3-ubyte"
LBL = "train-labels-idx1-ubyte"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (IMG, idx_bytes(np.zeros((60, 28, 28), np.uint8), 0x801), "wrong magic number 0x00000801"),
        (LBL, idx_bytes(np.zeros(60, np.uint8), 0x803), "wrong magic number 0x00000803"),
        (IMG, idx_bytes(np.zeros((60, 28, 28), np.uint8), 0x803)[:-100], "truncated data"),
        (IMG, idx_bytes(np.zeros((60, 28, 28), np.uint8), 0x803)[:10], "truncated header"),
        (IMG, idx_bytes(np.zeros((60, 28, 28), np.uint8), 0x803) + b"xx", "2 unexpected trailing bytes"),
        (IMG, idx_bytes(np.zeros((60, 32, 32), np.uint8), 0x803), r"images are \(32, 32\)"),
        (LBL, idx_bytes(np.zeros(59, np.uint8), 0x801), "60 images but train-labels-idx1-ubyte has 59 labels"),
        (LBL, idx_bytes(np.full(60, 12, np.uint8), 0x801), "label 12 out of range"),
    ],
    ids=[
        "img-magic",
        "lbl-magic",
        "truncated",
        "short-header",
        "trailing",
        "not-28x28",
        "count-mismatch",
        "label-range",
    ],
)
def test_idx_bad_input_names_the_file(tmp_path, name, data, message):
    write_idx_dir(tmp_path)
    _corrupt(tmp_path, name, data)
    with pytest.raises(DataError, match=message) as info:
        load_idx(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_idx_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        load_idx(tmp_path / "nope")
    write_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing IDX file t10k-labels-idx1-ubyte"):
        load_idx(tmp_path)


def test_idx_corrupt_gzip(tmp_path):
    write_idx_dir(tmp_path, gz=True)
    good = (tmp_path / f"{IMG}.gz").read_bytes()
    (tmp_path / f"{IMG}.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=f"{IMG}.gz: cannot read"):
        load_idx(tmp_path)


def test_idx_gz_of_wrong_magic(tmp_path):
    write_idx_dir(tmp_path, gz=True)
    (tmp_path / f"{IMG}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8))
    with pytest.raises(DataError, match="wrong magic"):
        load_idx(tmp_path)


# ---- folder -----------------------------------------------------------------------------------


def _write_folder(root: pathlib.Path, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    images, labels = make_arrays(n)
    for i, (im, lb) in enumerate(zip(images, labels, strict=True)):
        (root / str(lb)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im, mode="L").save(root / str(lb) / f"{i:03d}.png")
    return images, labels


def test_folder_labels_from_parent_and_fixed_split(tmp_path):
    images, labels = _write_folder(tmp_path, 100)
    (tmp_path / "notes.txt").write_text("ignored")
    ds = load_dataset(f"folder:{tmp_path}")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 70, "validation": 10, "test": 20}
    assert _same_multiset(*_all(ds, ("train", "validation", "test")), images, labels)


def test_folder_with_split_subfolders(tmp_path):
    _write_folder(tmp_path / "train", 30)
    _write_folder(tmp_path / "test", 10)
    ds = load_dataset(f"folder:{tmp_path}")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 30, "test": 10}


def test_folder_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    bad = tmp_path / "bad"
    _write_folder(bad, 10)
    (bad / "cats").mkdir()
    with pytest.raises(DataError, match="folder name 'cats' is not a class"):
        load_dataset(f"folder:{bad}")
    big = tmp_path / "big"
    (big / "3").mkdir(parents=True)
    Image.new("L", (40, 30)).save(big / "3" / "x.png")
    with pytest.raises(DataError, match="x.png: image is 40x30, expected 28x28"):
        load_dataset(f"folder:{big}")
    corrupt = tmp_path / "corrupt"
    (corrupt / "1").mkdir(parents=True)
    (corrupt / "1" / "y.png").write_bytes(b"<html>not a png</html>")
    with pytest.raises(DataError, match="y.png: cannot read image"):
        load_dataset(f"folder:{corrupt}")


# ---- spec parsing and the Keras download cache --------------------------------------------------


@pytest.mark.parametrize("spec", ["nope", "npz:", "csv:/tmp/x", "folder"])
def test_unknown_spec(spec):
    with pytest.raises(DataError, match="unknown data set"):
        load_dataset(spec)


def test_keras_mnist_uses_the_cache_without_network(tmp_path, monkeypatch):
    """A file already in the Keras cache with the right sha256 is used; nothing is downloaded."""
    from mnist_batch.data import keras_mnist
    from mnist_batch.model_card import file_sha256

    cache = tmp_path / "keras_home"
    (cache / "datasets").mkdir(parents=True)
    arrays = write_npz(cache / "datasets" / "mnist.npz", n_train=120, n_test=30)
    monkeypatch.setattr(keras_mnist, "MNIST_SHA256", file_sha256(cache / "datasets" / "mnist.npz"))

    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("network used despite a valid cached file")

    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    ds = keras_mnist.load_keras_mnist(cache_dir=cache)
    assert ds.name == "mnist"
    np.testing.assert_array_equal(ds.split("test").images, arrays["x_test"])


def test_keras_mnist_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    from mnist_batch.data import keras_mnist

    monkeypatch.setattr(keras_mnist, "MNIST_URL", "http://127.0.0.1:9/mnist.npz")
    with pytest.raises(DataError, match="download failed.*npz:/path/to/mnist.npz"):
        keras_mnist.load_keras_mnist(cache_dir=tmp_path)
