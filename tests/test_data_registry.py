"""Data set specs resolve through one registry, used by load_dataset, evaluate and the CLI help."""

from __future__ import annotations

import pytest

from mnist_batch.data import DATASET_SPECS, SOURCES, image_folder, load_dataset, parse_spec
from mnist_batch.errors import DataError


def test_every_spec_form_resolves_to_its_source():
    assert DATASET_SPECS == ("sample", "npz:PATH", "idx:DIR", "folder:DIR", "mnist", "fashion-mnist[:DIR]")
    cases = {
        "sample": ("sample", None),
        "mnist": ("mnist", None),
        "fashion-mnist": ("fashion-mnist", None),
        "fashion-mnist:/d": ("fashion-mnist", "/d"),
        "npz:/a/b.npz": ("npz", "/a/b.npz"),
        "idx:/d": ("idx", "/d"),
        "folder:/f": ("folder", "/f"),
    }
    for spec, (kind, arg) in cases.items():
        source, got = parse_spec(spec)
        assert (source.kind, got) == (kind, arg), spec
    assert set(SOURCES) == {"sample", "npz", "idx", "folder", "mnist", "fashion-mnist"}


@pytest.mark.parametrize("spec", ["npz", "npz:", "idx", "folder:", "sample:x", "mnist:x", "nope", "", "Sample"])
def test_bad_specs_name_every_valid_form(spec):
    with pytest.raises(DataError, match="expected one of: sample, npz:PATH, idx:DIR, folder:DIR, mnist"):
        parse_spec(spec)
    with pytest.raises(DataError, match="unknown data set"):
        load_dataset(spec)


def test_image_folder_is_folder_specs_and_plain_directories(tmp_path):
    assert image_folder(f"folder:{tmp_path}") == str(tmp_path)
    assert image_folder(str(tmp_path)) == str(tmp_path)
    assert image_folder("sample") is None and image_folder(f"idx:{tmp_path}") is None
    assert image_folder(str(tmp_path / "missing")) is None
