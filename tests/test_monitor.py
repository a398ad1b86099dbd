"""``mnist-batch monitor`` over a real run store: batches of real digits scored by Beam, then checked.

One runs root (module fixture) gets seven committed runs, each a real ``score --layout runs``:

  d1, d2      300 held-out digits each (the model's own distribution): never flagged
  classes     only 0s and 1s: class-mix drift
  scans       digits rendered as dark-on-light scans with heavy noise: confidence drift, low confidence
  fashion     Fashion-MNIST images scored by the digit model (skipped if the Debian package is missing)
  newmodel1/2 digits again, scored by a second model whose card has no reference: a model change,
              then the new model's first run is its reference

The first model's card carries the held-out ``reference`` computed by
:func:`mnist_batch.training.export.reference_distribution` (what ``train --export`` writes).
"""

from __future__ import annotations

import datetime
import json
import pathlib
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from browser import headless
from PIL import Image

from mnist_batch.config import ScoreConfig
from mnist_batch.model_card import ModelCard, read_card, write_card

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.cli import main as cli_main  # noqa: E402
from mnist_batch.monitoring.checks import Thresholds, parse_fail_on  # noqa: E402
from mnist_batch.monitoring.monitor import monitor  # noqa: E402
from mnist_batch.monitoring.table import MONITOR_RUNS_SCHEMA  # noqa: E402
from mnist_batch.scoring import launch  # noqa: E402

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data
pytestmark = pytest.mark.slow

FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
BATCH = 300
REPO = pathlib.Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "out" / "test-artifacts" / "monitor"


def write_pngs(folder: pathlib.Path, images, labels=None) -> None:
    for i, image in enumerate(images):
        sub = folder / (str(int(labels[i])) if labels is not None else "unlabelled")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(sub / f"{i:05d}.png")


def score(model, folder, root, run_id, run_date) -> dict:
    config = ScoreConfig(model=str(model), inputs=(str(folder),), output=str(root), run_id=run_id)
    return launch.launch(config, launch.RunOptions(layout="runs", run_date=run_date), wait=True)


def card_with_reference(model: pathlib.Path, dest: pathlib.Path, test) -> pathlib.Path:
    """A copy of ``model`` whose card holds the held-out reference, as ``train --export`` writes it."""
    from mnist_batch.metrics import accuracy, confusion_matrix
    from mnist_batch.models import Predictor
    from mnist_batch.training.export import reference_distribution

    dest.mkdir(parents=True, exist_ok=True)
    path = dest / model.name
    shutil.copy(model, path)
    probs = Predictor.load(str(path))(test.images)
    card = read_card(model)
    acc = accuracy(confusion_matrix(test.labels, probs.argmax(axis=1), card.num_classes))
    data = json.loads(card.to_json())
    data.update(reference=reference_distribution(probs), test_metrics={"accuracy": acc})
    write_card(ModelCard.from_dict(data), path)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model, sample_data):
    """The runs root with its seven committed runs; returns (root, first model, second model, notes)."""
    tmp = tmp_path_factory.mktemp("monitor")
    test = sample_data.split("test")
    model = card_with_reference(tiny_model, tmp / "model_a", test)
    second = scoring_fixtures.train_tiny_model(tmp / "model_b", name="tiny_b", epochs=2, seed=3)
    root = tmp / "root"
    rng = np.random.default_rng(0)
    order = rng.permutation(len(test.labels))
    batches = [order[i * BATCH : (i + 1) * BATCH] for i in range(6)]

    write_pngs(tmp / "d1", test.images[batches[0]], test.labels[batches[0]])
    score(model, tmp / "d1", root, "d1", "2026-03-01")
    write_pngs(tmp / "d2", test.images[batches[1]], test.labels[batches[1]])
    score(model, tmp / "d2", root, "d2", "2026-03-02")
    few = np.flatnonzero(np.isin(test.labels, [0, 1]))[:BATCH]
    write_pngs(tmp / "classes", test.images[few], test.labels[few])
    score(model, tmp / "classes", root, "classes", "2026-03-03")
    idx = batches[2]
    scans = []
    for i in idx:
        scan = scoring_fixtures.scan_like(test.images[i], rng).astype(np.float64)
        scans.append(np.clip(scan + rng.normal(0, 70, scan.shape), 0, 255).astype(np.uint8))  # heavy noise
    write_pngs(tmp / "scans", scans, test.labels[idx])
    score(model, tmp / "scans", root, "scans", "2026-03-04")
    fashion = None
    if FASHION_DIR.is_dir():
        from mnist_batch.data import load_dataset

        fashion = load_dataset("fashion-mnist").split("test").images[:BATCH]
        write_pngs(tmp / "fashion", fashion)
        score(model, tmp / "fashion", root, "fashion", "2026-03-05")
    write_pngs(tmp / "n1", test.images[batches[3]], test.labels[batches[3]])
    score(second, tmp / "n1", root, "newmodel1", "2026-03-06")
    write_pngs(tmp / "n2", test.images[batches[4]], test.labels[batches[4]])
    score(second, tmp / "n2", root, "newmodel2", "2026-03-07")
    return {"root": root, "model": model, "second": second, "fashion": fashion is not None, "tmp": tmp}


def by_run(result) -> dict:
    return {r.run: {c.check: c for c in checks} for r, checks in zip(result.records, result.results, strict=True)}


def test_same_distribution_runs_are_not_flagged_and_shifted_runs_are(store, tmp_path):
    result = monitor(str(store["root"]), tmp_path / "mon")
    checks = by_run(result)
    expected = ["d1", "d2", "classes", "scans", *(["fashion"] if store["fashion"] else []), "newmodel1", "newmodel2"]
    assert [r.run for r in result.records] == expected
    psi = {run: (c["class_mix"].value, c["confidence"].value) for run, c in checks.items()}
    print("PSI (class mix, confidence):", json.dumps(psi))
    for run in ("d1", "d2"):
        assert result.references[expected.index(run)].kind == "card"
        assert all(c.status == "ok" for c in checks[run].values()), checks[run]
        assert psi[run][0] < 0.1 and psi[run][1] < 0.1
    assert (
        checks["classes"]["class_mix"].status == "alert"
        and "predicted class mix PSI" in checks["classes"]["class_mix"].reason
    )
    assert "model card of tiny" in checks["classes"]["class_mix"].reason
    scans = checks["scans"]
    assert scans["confidence"].status == "alert" and scans["low_confidence"].status == "alert", scans
    assert scans["accuracy"].status == "alert"
    if store["fashion"]:
        assert checks["fashion"]["confidence"].status == "alert" or checks["fashion"]["class_mix"].status == "alert"
        assert checks["fashion"]["accuracy"].reason == "accuracy: no labels"
    # The second model: a model change, then its first run is the reference of its later runs.
    assert (
        checks["newmodel1"]["model"].status == "alert" and "model changed: tiny " in checks["newmodel1"]["model"].reason
    )
    assert checks["newmodel1"]["class_mix"].reason == "this run is the reference"
    assert all(c.status != "alert" for c in checks["newmodel2"].values()), checks["newmodel2"]
    assert result.references[-1].kind == "run" and result.references[-1].run == "newmodel1"
    assert any("no model card" not in n for n in result.notes) or not result.notes


def test_runs_table_has_one_row_per_run_with_the_summary_figures(store, tmp_path):
    result = monitor(str(store["root"]), tmp_path / "mon")
    table = pq.read_table(result.outputs["runs"])
    assert table.schema.equals(MONITOR_RUNS_SCHEMA)
    rows = {r["run"]: r for r in table.to_pylist()}
    assert set(rows) == {r.run for r in result.records}
    d1 = rows["d1"]
    assert d1["matched"] == d1["scored"] == BATCH and d1["errors"] == 0 and d1["runtime"] == "keras"
    assert (
        d1["dt"] == datetime.date(2026, 3, 1)
        and len(d1["model_id"]) == 64
        and d1["status"] == "ok"
        and d1["flags"] == []
    )
    assert sum(d1["predicted_class_counts"]) == BATCH and abs(sum(d1["predicted_class_mix"]) - 1) < 1e-9
    assert sum(d1["confidence_histogram"]) == BATCH and 0.8 < d1["accuracy"] <= 1 and d1["macro_f1"] > 0.7
    assert d1["committed_at"] == result.records[0].row["committed_at"] and d1["runtime_model_id"] == d1["model_id"]
    assert [r["run"] for r in table.to_pylist()] == [r.run for r in result.records]  # commit order
    assert result.table_notes == [] and all(r.row is not None for r in result.records)  # rows agree with summaries
    assert table.schema.field("committed_at").type == pa.timestamp("us", tz="UTC")
    assert d1["wall_time_s"] > 0 and d1["images_per_s"] > 0 and d1["runner"] == "DirectRunner"
    (summary,) = store["root"].glob("_runs/dt=*/run=d1/summary.json")
    data = json.loads(summary.read_text())  # paths stored absolute: the same meaning read from any folder
    assert pathlib.Path(data["model"]).is_absolute() and all(pathlib.Path(i).is_absolute() for i in data["inputs"])
    assert data["model_reference"]["model_id"] == data["model_id"] and data["model_reference"]["accuracy"] > 0.8
    assert rows["classes"]["status"] == "alert" and any(f.startswith("class_mix: ") for f in rows["classes"]["flags"])
    assert rows["classes"]["psi_class_mix"] >= 0.25
    assert rows["newmodel1"]["model_id"] != d1["model_id"]
    latest = json.loads(result.outputs["json"].read_text())["latest"]
    assert latest["run"] == "newmodel2" and latest["status"] != "alert"  # run vs run at 300 images: PSI noise ~0.13


def test_fashion_mnist_case_needs_the_debian_package(store):
    if not store["fashion"]:
        pytest.skip(f"{FASHION_DIR} missing: apt-get install -y dataset-fashion-mnist")
    result = monitor(str(store["root"]), store["tmp"] / "mon_fashion")
    checks = by_run(result)["fashion"]
    flagged = [c for c in checks.values() if c.status == "alert"]
    print("fashion flags:", [c.reason for c in flagged])
    assert {"class_mix", "confidence"} & {c.check for c in flagged}


def test_cli_fail_on_exits_5_for_a_flagged_latest_run_and_0_otherwise(store, tmp_path, capsys):
    root = str(store["root"])
    # The latest run (newmodel2) is fine: 0 even with every check.
    assert cli_main(["monitor", root, "--output", str(tmp_path / "a"), "--fail-on", "all"]) == 0
    out = capsys.readouterr()
    assert "latest run newmodel2" in out.out and "FAILED" not in out.err
    # Against d1 as the reference, the latest run (another model) drifts less than the thresholds
    # but its model differs from the previous run's only at newmodel1: exit 0 for drift.
    assert cli_main(["monitor", root, "--output", str(tmp_path / "b"), "--reference", "d1", "--fail-on", "drift"]) == 0
    capsys.readouterr()
    # Thresholds as options: a PSI alert at 0 flags every run that differs at all.
    code = cli_main(["monitor", root, "--output", str(tmp_path / "c"), "--fail-on", "drift,errors", "--psi-warn", "0",
                     "--psi-alert", "0.0001", "--reference", "classes"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 5
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 2 and any("FAILED class_mix: run newmodel2" in line for line in failed), err
    assert cli_main(["monitor", root, "--output", str(tmp_path / "d"), "--fail-on", "nope"]) == 2
    assert "unknown check 'nope'" in capsys.readouterr().err
    assert cli_main(["monitor", str(tmp_path), "--output", str(tmp_path / "e")]) == 2
    assert "not a runs root" in capsys.readouterr().err
    assert cli_main(["monitor", root, "--output", str(tmp_path / "f"), "--reference", "zzz"]) == 2


def test_cli_exits_5_on_the_shifted_batch_when_it_is_the_latest(store, tmp_path, capsys):
    """A copy of the store cut after the ``scans`` night: the nightly pair fails on that night."""
    src = store["root"]
    root = tmp_path / "root"
    shutil.copytree(src, root)
    for later in ("fashion", "newmodel1", "newmodel2"):
        for marker in root.glob(f"_runs/dt=*/run={later}/_SUCCESS"):
            marker.unlink()  # uncommitted: invisible to the monitor
    code = cli_main(["monitor", str(root), "--output", str(tmp_path / "m"), "--fail-on", "drift,low_confidence"])
    captured = capsys.readouterr()
    assert code == 5, captured.out + captured.err
    lines = [line for line in captured.err.splitlines() if line.startswith("mnist-batch monitor: FAILED")]
    assert {line.split()[3].rstrip(":") for line in lines} >= {"confidence", "low_confidence"}, lines
    assert all("run scans (dt=2026-03-04)" in line for line in lines)
    assert cli_main(["monitor", str(root), "--output", str(tmp_path / "m"), "--fail-on", "model,errors"]) == 0


def test_model_card_next_to_the_recorded_model_or_given(store, tmp_path):
    """Without the card beside the recorded model path the first run is the reference; --model-card restores it."""
    root = tmp_path / "root"
    shutil.copytree(store["root"], root)
    card = store["model"].with_name(store["model"].stem + ".card.json")
    moved = tmp_path / "cards" / card.name
    moved.parent.mkdir()
    shutil.copy(card, moved)
    # Scored today, the card's reference travels in the summary: moving the model changes nothing.
    moved_model = monitor(str(root), tmp_path / "stored")
    for summary in root.glob("_runs/dt=*/run=*/summary.json"):
        data = json.loads(summary.read_text())
        if not data["run_id"].startswith("newmodel"):  # the second model's card has no reference
            assert data["model_reference"]["model_id"] == data["model_id"]
        data["model"] = str(tmp_path / "elsewhere" / "tiny.keras")
        summary.write_text(json.dumps(data))
    assert monitor(str(root), tmp_path / "moved").references[0].kind == "card" == moved_model.references[0].kind
    # Summaries written before the copy existed (no model_reference): the card beside the model path.
    for summary in root.glob("_runs/dt=*/run=*/summary.json"):
        data = json.loads(summary.read_text())
        data.pop("model_reference", None)
        summary.write_text(json.dumps(data))
    plain = monitor(str(root), tmp_path / "a")
    assert plain.references[0].kind == "run" and plain.references[0].run == "d1"
    assert any("no model card" in n for n in plain.notes)
    assert plain.references[0].fallback and "no model card found" in by_run(plain)["d2"]["reference"].reason
    given = monitor(str(root), tmp_path / "b", model_cards=[str(moved)])
    assert given.references[0].kind == "card" and given.references[0].fallback is None


def test_page_renders_in_a_headless_browser_with_every_plot(store, chromium, tmp_path):
    """The page from the real store, opened in chromium: plots decoded, a non-blank screenshot (kept in out/)."""
    result = monitor(str(store["root"]), ARTIFACTS)
    page = result.outputs["page"]
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and html.count("src='data:image/png;base64,") == 6
    assert "Flagged runs" in html and "model changed: tiny " in html and "Model changes" in html
    shot = ARTIFACTS / "monitor_screenshot.png"
    shot.unlink(missing_ok=True)
    proc = headless(chromium, tmp_path / "p1", f"--screenshot={shot}", "--window-size=1280,3000", page.as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    dom = headless(chromium, tmp_path / "p2", "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-images-loaded="6/6"' in dom.stdout, dom.stdout[:500]
    assert dom.stdout.count('data-loaded="1"') == 6
    assert "Uncaught" not in proc.stderr + dom.stderr
    image = np.asarray(Image.open(shot).convert("RGB"), np.int16)
    assert image.shape[:2] == (3000, 1280)
    ink = (image < 235).any(axis=2).mean()
    colour = (np.ptp(image, axis=2) > 60).mean()  # saturated pixels: the plots' lines, bars and heatmap
    print(f"screenshot {shot}: {ink:.1%} non-white, {colour:.1%} coloured pixels")
    assert ink > 0.05 and colour > 0.01


def test_summaries_written_before_the_aggregates_are_not_drift(store, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(store["root"], root)
    (summary,) = root.glob("_runs/dt=*/run=classes/summary.json")
    data = json.loads(summary.read_text())
    for key in ("predicted_class_counts", "confidence_histogram", "mean_confidence"):
        del data[key]
    summary.write_text(json.dumps(data))
    result = monitor(str(root), tmp_path / "mon")
    checks = by_run(result)["classes"]
    assert checks["class_mix"].status == "ok" and "scored before they were recorded" in checks["class_mix"].reason
    assert pq.read_table(result.outputs["runs"]).num_rows == len(result.records)
    assert result.outputs["page"].is_file()


def test_fail_on_groups_and_threshold_checks():
    assert parse_fail_on("drift,errors") == ("class_mix", "confidence", "errors")
    assert parse_fail_on("all")[-1] == "model" and parse_fail_on("") == ()
    with pytest.raises(Exception, match="psi-warn"):
        Thresholds(psi_warn=0.3, psi_alert=0.2).check()
