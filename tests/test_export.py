"""export-images: exact PNG round trip, deterministic bytes, refusing to clobber."""

import hashlib
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from mnist_batch.data.export import export_images
from mnist_batch.errors import DataError


def _digest_tree(root: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_png_export_round_trips_the_exact_arrays(sample, tmp_path):
    split = sample.split("test")
    manifest = export_images(sample, "test", tmp_path / "out")
    assert manifest["count"] == 2000
    files = sorted((tmp_path / "out").glob("*/*.png"))
    assert len(files) == 2000
    for path in files:
        index = int(path.stem)
        assert int(path.parent.name) == split.labels[index]
        decoded = np.asarray(Image.open(path))
        assert decoded.dtype == np.uint8 and decoded.shape == (28, 28)
        np.testing.assert_array_equal(decoded, split.images[index])
    assert (tmp_path / "out" / "classes.txt").read_text().split() == list(sample.class_names)
    assert json.loads((tmp_path / "out" / "EXPORT.json").read_text())["split"] == "test"


def test_export_is_deterministic(sample, tmp_path):
    export_images(sample, "validation", tmp_path / "a")
    export_images(sample, "validation", tmp_path / "b")
    assert _digest_tree(tmp_path / "a") == _digest_tree(tmp_path / "b")


def test_jpg_export_is_close_to_the_arrays(sample, tmp_path):
    export_images(sample, "validation", tmp_path / "j", fmt="jpg")
    path = sorted((tmp_path / "j").glob("*/*.jpg"))[0]
    decoded = np.asarray(Image.open(path)).astype(int)
    original = sample.split("validation").images[int(path.stem)].astype(int)
    assert np.abs(decoded - original).mean() < 8


def test_refuses_non_empty_dir_unless_overwrite(sample, tmp_path):
    out = tmp_path / "out"
    export_images(sample, "validation", out)
    with pytest.raises(DataError, match="not empty.*--overwrite"):
        export_images(sample, "validation", out)
    (out / "0" / "stale.png").write_bytes(b"old")
    export_images(sample, "validation", out, overwrite=True)
    assert not (out / "0" / "stale.png").exists()
    assert len(list(out.glob("*/*.png"))) == 1000


def test_overwrite_never_deletes_a_folder_it_did_not_write(sample, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(DataError, match="not an earlier export"):
        export_images(sample, "test", precious, overwrite=True)
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_bad_split_and_format(sample, tmp_path):
    with pytest.raises(DataError, match="no split 'holdout'"):
        export_images(sample, "holdout", tmp_path / "x")
    with pytest.raises(DataError, match="unknown export format 'gif'"):
        export_images(sample, "test", tmp_path / "x", fmt="gif")
