"""Scoring cost per image: hand-written loops vs ``mnist-batch score``, per runtime, in one run.

Exports the bundled test split (2,000 real MNIST digits) as PNG files, replicated with hard links
(else copies) to each requested count, and runs, each as its own process, timed from start to
exit (imports and start-up included: what a user waits for):

  (a)  tf_loop      a hand-written single-process loop: list files, read, decode and preprocess
                    each (mnist_batch.preprocess.preprocess_bytes), one ``tf.function`` call per
                    256 files (Predictor with --runtime keras), one Parquet file with pyarrow;
  (a') fast_loop    the same loop with the fast runtime (the card's LiteRT file): the limit for
                    this design;
  (a'') two_loops   that loop as two processes side by side, each on half the files (every other
                    path), one interpreter thread each and the model in the runtime's calls of 16
                    (LITERT_CHUNK): the two-core figure a user gets by splitting the folder by hand,
                    with no framework at all -- measured, where the limit below is computed;
  (b)  score        ``mnist-batch score`` (default --runtime auto: the fast runtime; default --engine auto:
                    in process for local files unless $MNIST_BATCH_INPROCESS_MAX_FILES says otherwise: the runtime
                    column says which engine ran);
       score_one_process  the same with no decode helper process (decoding and the model take
                    turns in one process: how score ran before issue 24);
       score_keras  ``mnist-batch score --runtime keras``.

Between runs (before the first, after each) the costs alone are measured again (:func:`worker_costs`):
each run's share of the two-core limit is read against the mean of the limits measured just before
and just after it, so a host whose speed drifts (10-20 % within an hour here) moves both alike. The
costs are measured twice each time: in one process with the other core idle (the limit assumes each
core gives what one gives alone), and in one process per core at once, each on its share of the files
(:func:`measure_costs_together`: what the cores give together; on this host, 7 Dec 2026, from 1.5 % more
to 9 % less than the first, 4 % less at the median of 10).

For each: images/s, CPU ms/image (user + system time of the process tree, imports included),
peak RSS (the process tree's, polled every 50 ms), and the start-up alone (the same command on
20 files). Models: the default ``cnn`` (--cnn-model, e.g. the demo's; its LiteRT file is made
when the card records none) and the Keras example CNN (Conv32-Conv64-Dense128, trained here for
one epoch). Results: a Markdown table per model and the targets of issue 13.

Usage:
  python benchmarks/bench_score.py --cnn-model out/demo/models/cnn.keras      # 10k, 50k, 200k files
  python benchmarks/bench_score.py --cnn-model M --files 10000 --models cnn --modes tf_loop,score
  python benchmarks/bench_score.py --quick                                     # 2,000 files, small CNN
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
MODES = ("tf_loop", "fast_loop", "two_loops", "score", "score_one_process", "score_keras")
NAMES = {
    "tf_loop": "(a) TF loop",
    "fast_loop": "(a') LiteRT loop",
    "two_loops": "(a'') two LiteRT loops, half the files each (1 thread, calls of 16)",
    "score": "(b) mnist-batch score",
    "score_one_process": "(b0) score, no decode helper",
    "score_keras": "(b) score --runtime keras",
}
STARTUP_FILES = 20


# --- setup -----------------------------------------------------------------------------------


def train_small_cnn(directory: pathlib.Path) -> pathlib.Path:
    """The Keras example CNN trained for 1 epoch on the bundled sample, exported as .keras + card."""
    import keras

    from mnist_batch.constants import MNIST_CLASS_NAMES, MODEL_INPUT_SHAPE, PREPROCESS_VERSION
    from mnist_batch.data import load_dataset
    from mnist_batch.model_card import ModelCard, file_sha256, write_card
    from mnist_batch.preprocess import normalize

    data = load_dataset("sample")
    train = data.split("train")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(  # the Keras example CNN (the training zoo's "cnn_keras" shape)
        [
            keras.Input(MODEL_INPUT_SHAPE),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Dropout(0.25),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(normalize(train.images), train.labels, epochs=1, batch_size=64, verbose=0)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "small_cnn.keras"
    model.save(path)
    write_card(
        ModelCard(
            model_name="small_cnn",
            model_id=file_sha256(path),
            class_names=MNIST_CLASS_NAMES,
            input_shape=MODEL_INPUT_SHAPE,
            preprocess_version=PREPROCESS_VERSION,
            dataset="sample",
            split_sizes={name: len(split) for name, split in data.splits.items()},
            epochs=1,
        ),
        path,
    )
    return path


def ensure_fast_runtime(model: pathlib.Path, work: pathlib.Path) -> pathlib.Path:
    """A copy of ``model`` (and card) in ``work`` whose card records the LiteRT file (made when missing)."""
    from mnist_batch.constants import FAST_RUNTIME
    from mnist_batch.model_card import card_path, read_card
    from mnist_batch.training.export import add_runtime

    work.mkdir(parents=True, exist_ok=True)
    copy = work / model.name
    for src in (model, card_path(model), model.with_suffix(".tflite")):
        if src.is_file():
            shutil.copyfile(src, work / src.name)
    if FAST_RUNTIME not in read_card(copy).runtimes:
        add_runtime(copy, FAST_RUNTIME)
    return copy


def make_folder(source: pathlib.Path, target: pathlib.Path, count: int) -> None:
    """``count`` PNG files under target/<label>/, cycling through the exported split."""
    if (target / ".count").is_file() and (target / ".count").read_text() == str(count):
        return
    shutil.rmtree(target, ignore_errors=True)
    files = sorted(source.glob("*/*.png"))
    for i in range(count):
        src = files[i % len(files)]
        dst = target / src.parent.name / f"{i:07d}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    (target / ".count").write_text(str(count))


# --- (a) and (a'): the hand-written loop (runs in its own process) ------------------------------


def worker_pair(folder: str, model_path: str, out: str) -> int:
    """Two LiteRT loops (:func:`worker_loop`) as two processes at once, on every other file each; the images both scored."""
    me = str(pathlib.Path(__file__).resolve())
    from mnist_batch.models.runtimes import LITERT_CHUNK

    loop = [sys.executable, me, "--worker", "litert", "--model", model_path, "--folder", folder]
    loop += ["--threads", "1", "--chunk", str(LITERT_CHUNK)]  # one core each, the runtime's calls
    procs = [
        subprocess.Popen(
            [*loop, "--part", f"{k}/2", "--out", os.path.join(out, f"part-{k}")], stdout=subprocess.PIPE, text=True
        )
        for k in range(2)
    ]
    images = 0
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"a loop of the pair failed ({proc.returncode})")
        images += worker_result(stdout)["images"]
    return images


def worker_loop(
    folder: str,
    model_path: str,
    runtime: str,
    out: str,
    part: tuple[int, int] = (0, 1),
    threads: int | None = None,
    chunk: int = 256,
) -> int:
    """The loop a user would write: files -> decode + preprocess -> one model call per 256 -> Parquet
    (``part`` ``(k, n)``: only every n-th file from the k-th, the share of one of n loops; ``threads``
    and ``chunk``: the LiteRT interpreter's threads (default: the runtime's) and images per call)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mnist_batch.model_card import read_card
    from mnist_batch.models import Predictor
    from mnist_batch.models.predictor import to_probabilities
    from mnist_batch.models.runtimes import LiteRTCall, default_threads, get_runtime
    from mnist_batch.preprocess import ImageDecodeError, normalize, preprocess_bytes

    card = read_card(model_path, verify_id=False)
    if runtime == "keras":
        predictor = Predictor.load(model_path, card.model_id)
    else:
        # one interpreter call per 256 files, as a user's loop calls the LiteRT interpreter (the tool's
        # runtime calls it in chunks of LITERT_CHUNK: outputs bitwise the same, see "Model calls in chunks")
        call = LiteRTCall(
            pathlib.Path(get_runtime(runtime).artifact_uri(model_path)).read_bytes(),
            threads or default_threads(),
            chunk,
        )
        predictor = None
    predict = predictor.predict_normalized if predictor else (lambda x: to_probabilities(call(x)))
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs if f.lower().endswith(".png"))
    paths = paths[part[0] :: part[1]]
    out_paths, labels, confidences, probabilities = [], [], [], []
    batch, batch_paths = [], []

    def flush():
        probs = predict(normalize(np.stack(batch)))
        out_paths.extend(batch_paths)
        labels.append(probs.argmax(axis=1))
        confidences.append(probs.max(axis=1))
        probabilities.append(probs)
        batch.clear()
        batch_paths.clear()

    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        try:
            batch.append(preprocess_bytes(data).pixels)
        except ImageDecodeError:
            continue
        batch_paths.append(path)
        if len(batch) == 256:
            flush()
    if batch:
        flush()
    probs = np.concatenate(probabilities)
    table = pa.table(
        {
            "path": out_paths,
            "predicted_label": np.concatenate(labels).astype(np.int32),
            "confidence": np.concatenate(confidences),
            "probabilities": pa.FixedSizeListArray.from_arrays(pa.array(probs.ravel()), probs.shape[1]),
        }
    )
    os.makedirs(out, exist_ok=True)
    pq.write_table(table, os.path.join(out, "predictions.parquet"), compression="snappy")
    return table.num_rows


def worker_costs(folder: str, model_path: str, files: int = 20_000, part: tuple[int, int] = (0, 1)) -> dict:
    """Per-image costs alone, in one process: read + decode + preprocess (one core), and the model
    (normalise + LiteRT on 256 images a group) on 1 and on 2 threads, as one interpreter call per 256
    and in the runtime's chunks (:data:`~mnist_batch.models.runtimes.LITERT_CHUNK`); microseconds per image.
    The limit takes the cheapest model cost measured, so a faster way to call the model lifts the limit too.

    ``part`` ``(i, n)``: every n-th of the ``files`` paths from the i-th, and the model on 1 thread only
    (n > 1: one of n such processes run at once, each with its core, :func:`measure_costs_together`)."""

    from mnist_batch.models.runtimes import LITERT_CHUNK, LiteRTCall, get_runtime
    from mnist_batch.preprocess import normalize
    from mnist_batch.scoring.decode_pool import decode_group

    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs if f.endswith(".png"))[:files]
    paths = paths[part[0] :: part[1]]
    groups = [[(p, None) for p in paths[i : i + 256]] for i in range(0, len(paths), 256)]
    start = time.perf_counter()
    decoded = [decode_group(g, 10_000_000, 100_000_000).pixels for g in groups]
    decode_us = 1e6 * (time.perf_counter() - start) / len(paths)
    data = pathlib.Path(get_runtime("litert").artifact_uri(model_path)).read_bytes()
    costs = {"files": len(paths), "decode_us": decode_us, "chunk": LITERT_CHUNK}
    for chunk in (256, LITERT_CHUNK):
        for threads in (1, 2) if part[1] == 1 else (1,):
            call = LiteRTCall(data, threads, chunk)
            call(normalize(decoded[0]))  # allocate
            start = time.perf_counter()
            for pixels in decoded:
                call(normalize(pixels))
            costs[f"model_us_{threads}" + ("" if chunk == 256 else "_chunked")] = (
                1e6 * (time.perf_counter() - start) / len(paths)
            )
    return costs


def model_core_us(costs: dict) -> float:
    """The model's cheapest cost in core-µs per image among those measured (1 thread, or 2 threads × 2)."""
    found = [costs["model_us_1"], 2 * costs.get("model_us_2", float("inf"))]
    if "model_us_1_chunked" in costs:
        found += [costs["model_us_1_chunked"], 2 * costs.get("model_us_2_chunked", float("inf"))]
    return min(found)


def costs_line(costs: dict) -> str:
    """The model's costs measured, in words."""
    line = f"{costs['model_us_1']:.0f} µs/image on 1 thread, {costs['model_us_2']:.0f} on 2 threads, at 256 a call"
    if "model_us_1_chunked" in costs:
        line += (
            f"; {costs['model_us_1_chunked']:.0f} and {costs['model_us_2_chunked']:.0f} in calls of "
            f"{costs['chunk']} (the runtime's chunk)"
        )
    return line


def limit_of(costs: dict, cores: int) -> float:
    """Images/s that ``cores`` allow with no framework cost and perfect overlap, from costs measured alone."""
    return cores * 1e6 / (costs["decode_us"] + model_core_us(costs))


def limit_together(parts: list[dict]) -> float:
    """Images/s of the processes of :func:`measure_costs_together`, each on its core, summed: the limit
    measured with every core busy (what the cores give at once, where :func:`limit_of` assumes
    that ``cores`` give ``cores`` times what one gives alone)."""
    return sum(limit_of(p, 1) for p in parts)


def render_costs(results: dict, counts: list[int], cores: int) -> str:
    """Each run's share of the limit two cores allow (from the costs measured just before and just
    after it: their mean, and each), and core-hours per million images."""
    measured = [c for per in results.values() for r in per.values() for c in r["costs"]]
    decode = [c["decode_us"] for c in measured]
    model = [model_core_us(c) for c in measured]
    lines = [
        f"Costs alone ({measured[0]['files']:,} files, one process), measured {len(measured) // 2 + 1} times "
        f"between runs: read + decode + preprocess {min(decode):.0f}-{max(decode):.0f} µs/image on one core; "
        f"the model's cheapest (normalise + LiteRT) {min(model):.0f}-{max(model):.0f} core-µs/image "
        f"(first: {costs_line(measured[0])}). The limit on {cores} cores with no framework cost and perfect "
        f"overlap: {cores} / (decode + model). Each run is read against the mean of the limits measured just "
        "before and just after it (the share against each in brackets). The last column reads it against the "
        f"limit measured with the {cores} cores busy at once ({cores} processes, each on its share of the files, "
        "1 thread: what the cores give together, where the limit above assumes each gives what one gives alone).",
        "",
        "| files | what | images/s | limit before / after, images/s | share of the limit | "
        "core-hours per million images | limit measured at once, before / after | share of it |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for count in counts:
        for mode, per in results.items():
            r = per.get(count)
            if r is None:
                continue
            before, after = (limit_of(c, cores) for c in r["costs"])
            speed = r["images_per_s"]
            core_hours = r["cpu_ms_per_image"] * 1e6 / 1e3 / 3600
            together = "- | -"
            if r.get("costs_together"):
                t0, t1 = (limit_together(parts) for parts in r["costs_together"])
                together = f"{t0:,.0f} / {t1:,.0f} | **{speed / ((t0 + t1) / 2):.1%}**"
            lines.append(
                f"| {count:,} | {NAMES[mode]} | {speed:,.0f} | {before:,.0f} / {after:,.0f} | "
                f"**{speed / ((before + after) / 2):.1%}** ({speed / before:.1%}, {speed / after:.1%}) | "
                f"{core_hours:.3f} | {together} |"
            )
    return "\n".join(lines)


# --- the parent: each mode a process, its tree's RSS polled ---------------------------------------


def descendants(pid: int):
    """``pid`` and every process below it, each once (live ones; /proc's children lists)."""
    stack, seen = [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        yield p
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue


def tree_rss_bytes(pid: int) -> int:
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def command(mode: str, model: str, folder: pathlib.Path, out: pathlib.Path) -> list[str]:
    if mode == "two_loops":
        me = str(pathlib.Path(__file__).resolve())
        return [sys.executable, me, "--worker", "pair", "--model", model, "--folder", str(folder), "--out", str(out)]
    if mode in ("tf_loop", "fast_loop"):
        runtime = "keras" if mode == "tf_loop" else "litert"
        me = str(pathlib.Path(__file__).resolve())
        return [sys.executable, me, "--worker", runtime, "--model", model, "--folder", str(folder), "--out", str(out)]
    runtime = "keras" if mode == "score_keras" else "auto"
    score = [sys.executable, "-m", "mnist_batch", "score", "--model", model, "--input", str(folder)]
    return [*score, "--output", str(out), "--overwrite", "--runtime", runtime, "-q"]


def measure(mode: str, model: str, folder: pathlib.Path, out: pathlib.Path, log: pathlib.Path) -> dict:
    """Runs one mode as a process; wall time from start to exit, CPU time and peak RSS of its tree."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    if mode == "score_one_process":  # decoding and the model take turns in one process (before issue 24)
        env["MNIST_BATCH_DECODE_HELPERS"] = "0"
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(
            command(mode, model, folder, out), stdout=subprocess.PIPE, stderr=err, text=True, env=env
        )
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss_bytes(proc.pid))
            time.sleep(0.05)
        stdout = proc.stdout.read()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed ({proc.returncode}); see {log}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if mode.startswith("score"):
        summary = json.loads((out / "summary.json").read_text())
        images, runtime = summary["counts"]["scored"], summary.get("runtime")
        runtime = f"{runtime}, {summary.get('engine', 'beam')}"  # which engine --engine auto ran
    else:
        images = worker_result(stdout)["images"]
        runtime = (
            "keras" if mode == "tf_loop" else "litert" if mode == "fast_loop" else "litert, 2 processes, calls of 16"
        )
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "cpu_ms_per_image": 1000.0 * cpu_s / max(images, 1),
        "peak_rss_mb": peak / 2**20,
        "runtime": runtime,
    }


def worker_result(stdout: str) -> dict:
    """What a ``--worker`` process printed on its ``RESULT`` line."""
    return json.loads(next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))[7:])


def costs_workers(model: str, folder: pathlib.Path, parts: int) -> list[dict]:
    """:func:`worker_costs` in ``parts`` processes at once, each on its share of the files (1 thread
    each when ``parts`` > 1)."""
    me = str(pathlib.Path(__file__).resolve())
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    base = [sys.executable, me, "--worker", "costs", "--model", model, "--folder", str(folder)]
    procs = [
        subprocess.Popen(
            [*base, "--part", f"{i}/{parts}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for i in range(parts)
    ]
    outs = [p.communicate() for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        if proc.returncode:
            raise RuntimeError(f"a costs worker failed ({proc.returncode}): {err[-2000:]}")
    return [worker_result(out) for out, _ in outs]


def measure_costs(model: str, folder: pathlib.Path) -> dict:
    """:func:`worker_costs` in its own process."""
    (costs,) = costs_workers(model, folder, 1)
    print(
        f"costs: decode {costs['decode_us']:.0f} µs/image, model {costs_line(costs)}",
        flush=True,
    )
    return costs


def measure_costs_together(model: str, folder: pathlib.Path, cores: int) -> list[dict]:
    """:func:`worker_costs` in ``cores`` processes at once, each on its share of the files (1 thread)."""
    parts = costs_workers(model, folder, cores)
    print(
        f"costs on {cores} cores at once: "
        + "; ".join(f"decode {p['decode_us']:.0f}, model {model_core_us(p):.0f} µs/image" for p in parts)
        + f" -> {limit_together(parts):,.0f} images/s",
        flush=True,
    )
    return parts


def run_model(name: str, model: str, counts: list[int], modes: list[str], work: pathlib.Path, source: pathlib.Path):
    results: dict[str, dict[int, dict]] = {m: {} for m in modes}
    startup: dict[str, dict] = {}
    folder = work / f"files_{STARTUP_FILES}"
    make_folder(source, folder, STARTUP_FILES)
    for mode in modes:
        startup[mode] = measure(mode, model, folder, work / f"out_{mode}", work / f"log_{name}_{mode}_startup.txt")
        print(f"{name:>9} {mode:>11} start-up ({STARTUP_FILES} files): {startup[mode]['seconds']:.2f} s", flush=True)
    costs, together, cores = None, None, len(os.sched_getaffinity(0))
    for count in counts:
        folder = work / f"files_{count}"
        make_folder(source, folder, count)
        for mode in modes:
            before = costs or measure_costs(model, folder)
            before_together = together or measure_costs_together(model, folder, cores)
            r = measure(mode, model, folder, work / f"out_{mode}", work / f"log_{name}_{mode}_{count}.txt")
            costs = measure_costs(model, folder)
            together = measure_costs_together(model, folder, cores)
            r["costs"] = [before, costs]  # measured just before and just after this run
            r["costs_together"] = [before_together, together]
            results[mode][count] = r
            print(
                f"{name:>9} {mode:>11} {count:>8,} files: {r['images_per_s']:8,.0f} img/s  {r['seconds']:7.1f} s  "
                f"peak RSS {r['peak_rss_mb']:7,.0f} MiB  CPU {r['cpu_ms_per_image']:.3f} ms/img  [{r['runtime']}]",
                flush=True,
            )
    return {"results": results, "startup": startup}


def render(name: str, data: dict, counts: list[int]) -> str:
    results, startup = data["results"], data["startup"]
    lines = [
        f"**{name}**",
        "",
        "| files | what | runtime | images/s | × (a) | × (a') | × (a'') | CPU ms/image | peak RSS MiB |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for count in counts:
        a = results.get("tf_loop", {}).get(count)
        a2 = results.get("fast_loop", {}).get(count)
        a3 = results.get("two_loops", {}).get(count)
        for mode, per in results.items():
            r = per.get(count)
            if r is None:
                continue
            x_a = f"{r['images_per_s'] / a['images_per_s']:.2f}" if a else "-"
            x_a2 = f"{r['images_per_s'] / a2['images_per_s']:.2f}" if a2 else "-"
            x_a3 = f"{r['images_per_s'] / a3['images_per_s']:.2f}" if a3 else "-"
            lines.append(
                f"| {count:,} | {NAMES[mode]} | {r['runtime']} | {r['images_per_s']:,.0f} | {x_a} | {x_a2} | {x_a3} | "
                f"{r['cpu_ms_per_image']:.3f} | {r['peak_rss_mb']:,.0f} |"
            )
    lines += [
        "",
        f"Start-up ({STARTUP_FILES} files, start to exit): "
        + ", ".join(f"{NAMES[m]} {s['seconds']:.2f} s" for m, s in startup.items()),
    ]
    checks = []
    b, a, a2 = results.get("score", {}), results.get("tf_loop", {}), results.get("fast_loop", {})
    for count, target in ((50_000, 1.3), (10_000, 1.0)):
        if count in b and count in a:
            ratio = b[count]["images_per_s"] / a[count]["images_per_s"]
            checks.append(f"(b)/(a) at {count:,}: {ratio:.2f} (target >= {target})")
    if 200_000 in b and 200_000 in a2:
        ratio = b[200_000]["images_per_s"] / a2[200_000]["images_per_s"]
        checks.append(f"(b)/(a') at 200,000: {ratio:.2f} (target >= 0.9)")
    if 50_000 in b and 50_000 in a:
        ratio = b[50_000]["cpu_ms_per_image"] / a[50_000]["cpu_ms_per_image"]
        checks.append(f"CPU ms/image (b)/(a) at 50,000: {ratio:.2f} (target <= 0.75)")
    if b and len(counts) > 1:
        hi, lo = max(b), min(b)
        ratio = b[hi]["peak_rss_mb"] / b[lo]["peak_rss_mb"]
        checks.append(f"(b) peak RSS {hi:,} / {lo:,}: {ratio:.2f} (target <= 1.25)")
    return "\n".join(lines + ([""] + [f"- {c}" for c in checks] if checks else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", default="10000,50000,200000", help="comma-separated file counts")
    parser.add_argument("--quick", action="store_true", help="2,000 files, small CNN only (smoke test)")
    parser.add_argument("--cnn-model", default=None, help="the default cnn, exported with its card (else trained here)")
    parser.add_argument("--models", default="cnn,small", help="which models: cnn, small")
    parser.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    parser.add_argument("--work", default=None, help="work folder (default: a temp folder, deleted after)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", choices=("keras", "litert", "pair", "costs"), help=argparse.SUPPRESS)
    parser.add_argument("--part", default="0/1", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    part = tuple(int(x) for x in args.part.split("/"))
    if args.worker == "costs":
        print("RESULT " + json.dumps(worker_costs(args.folder, args.model, part=part)), flush=True)
        return 0
    if args.worker == "pair":
        print("RESULT " + json.dumps({"images": worker_pair(args.folder, args.model, args.out)}), flush=True)
        return 0
    if args.worker:
        n = worker_loop(args.folder, args.model, args.worker, args.out, part, args.threads, args.chunk)
        print("RESULT " + json.dumps({"images": n}), flush=True)
        return 0

    counts = [2000] if args.quick else [int(c) for c in args.files.split(",")]
    names = ["small"] if args.quick else [m for m in args.models.split(",") if m]
    modes = [m for m in args.modes.split(",") if m]
    work = pathlib.Path(args.work) if args.work else pathlib.Path(tempfile.mkdtemp(prefix="bench_score_"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        from mnist_batch.data import load_dataset
        from mnist_batch.data.export import export_images

        source = work / "export"
        if not (source / "EXPORT.json").is_file():
            export_images(load_dataset("sample"), "test", source, overwrite=True)
        models = {}
        for name in names:
            if name == "cnn" and args.cnn_model:
                models[name] = ensure_fast_runtime(pathlib.Path(args.cnn_model), work / "cnn")
            elif name == "cnn":
                print("training the default cnn (mnist-batch train; a few minutes on 2 cores) ...", flush=True)
                path = work / "cnn" / "cnn.keras"
                subprocess.run(
                    [sys.executable, "-m", "mnist_batch", "train", "--export", str(path), "-q"], check=True, cwd=REPO
                )
                models[name] = path
            else:
                print("training the Keras example CNN (1 epoch on the sample) ...", flush=True)
                models[name] = ensure_fast_runtime(train_small_cnn(work / "small_train"), work / "small")
        all_results = {name: run_model(name, str(path), counts, modes, work, source) for name, path in models.items()}
        print()
        for name, data in all_results.items():
            label = "default cnn (48/96/192 filters, batch norm)" if name == "cnn" else "small Keras example CNN"
            print(render(label, data, counts))
            print()
            print(render_costs(data["results"], counts, len(os.sched_getaffinity(0))))
            print()
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(all_results, indent=2) + "\n", encoding="utf-8")
        return 0
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
