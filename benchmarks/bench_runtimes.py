"""Which CPU runtime runs an exported digit model fastest, and how closely it agrees with Keras.

Converts one ``.keras`` model with Keras 3's own exporters to each candidate runtime and runs
each on the bundled test split (2,000 real MNIST digits) at batch 256:

  keras          the model on TensorFlow, one ``tf.function`` per batch (the Predictor)
  litert-fp32    LiteRT (ai-edge-litert), float32 weights
  litert-int8    LiteRT, int8 weights (dynamic-range quantisation; what ``mnist-batch export`` makes)
  onnx           ONNX Runtime, float32 (export needs tf2onnx + onnx)
  openvino       OpenVINO, its default precision on this CPU (bfloat16 where the CPU has it)
  openvino-f32   OpenVINO with INFERENCE_PRECISION_HINT=f32

For each (with 1 and 2 threads): images/s (model only, best of 3 passes over 5,120 images),
argmax agreement with Keras on the test split, max |delta p|, accuracy, and the file size.
Runtimes whose package is missing are listed as such (``pip install onnxruntime openvino
tf2onnx onnx`` to measure them all; only ai-edge-litert is a dependency of this package).

Usage:
  python benchmarks/bench_runtimes.py --model out/demo/models/cnn.keras
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

RUNTIMES = ("keras", "litert-fp32", "litert-int8", "onnx", "openvino", "openvino-f32")
NEEDS = {"litert": ["ai_edge_litert"], "onnx": ["onnxruntime", "tf2onnx", "onnx"], "openvino": ["openvino"]}


def litert_call(path: str, threads: int):
    from mnist_batch.models.runtimes import LiteRTCall

    return LiteRTCall(pathlib.Path(path).read_bytes(), threads)


def make_call(name: str, model, folder: str, threads: int):
    """(callable float32 [B, 28, 28, 1] -> [B, C], file size in bytes) for runtime ``name``."""
    import tensorflow as tf

    from mnist_batch.models import compiled_call

    if name == "keras":
        return compiled_call(model), None
    if name.startswith("litert"):
        path = os.path.join(folder, f"{name}.tflite")
        if not os.path.exists(path):
            opts = {"optimizations": [tf.lite.Optimize.DEFAULT]} if name == "litert-int8" else {}
            model.export(path, format="litert", verbose=False, **opts)
        return litert_call(path, threads), os.path.getsize(path)
    if name == "onnx":
        import onnxruntime as ort

        path = os.path.join(folder, "model.onnx")
        if not os.path.exists(path):
            model.export(path, format="onnx", verbose=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name_in = session.get_inputs()[0].name
        return (lambda x: session.run(None, {name_in: x})[0]), os.path.getsize(path)
    import openvino as ov

    path = os.path.join(folder, "model.xml")
    if not os.path.exists(path):
        model.export(path, format="openvino", verbose=False)
    config = {"INFERENCE_NUM_THREADS": threads}
    if name == "openvino-f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    request = ov.Core().compile_model(path, "CPU", config).create_infer_request()
    size = os.path.getsize(path) + os.path.getsize(path[:-4] + ".bin")
    return (lambda x: request.infer({0: x})[0].copy()), size


def images_per_s(call, x: np.ndarray, passes: int = 3) -> float:
    call(x[:256])
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        for i in range(0, len(x), 256):
            call(x[i : i + 256])
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an exported .keras model")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"subset of {','.join(RUNTIMES)}")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from mnist_batch.data import load_dataset
    from mnist_batch.models import load_keras_model
    from mnist_batch.models.artifacts import agreement
    from mnist_batch.preprocess import normalize

    model = load_keras_model(args.model)
    test = load_dataset("sample").split("test")
    x = normalize(test.images)
    model(x[:1], training=False)  # the exporters need a called model
    bench_x = np.concatenate([x] * 3)[: 256 * 20]
    rows, reference, keras_speed = [], None, None
    with tempfile.TemporaryDirectory(prefix="bench_runtimes_") as folder:
        for name in [r for r in args.runtimes.split(",") if r]:
            missing = [m for m in NEEDS.get(name.split("-")[0], []) if importlib.util.find_spec(m) is None]
            if missing:
                rows.append(f"| {name} | - | - | - | - | - | - | not installed ({', '.join(missing)}) |")
                continue
            speeds, size, probs = [], None, None
            for threads in (1, 2):
                if name == "keras" and threads == 2:
                    speeds.append(speeds[0])  # TensorFlow uses every core by itself
                    break
                call, size = make_call(name, model, folder, threads)
                if probs is None:
                    probs = np.concatenate([call(x[i : i + 256]) for i in range(0, len(x), 256)])
                speeds.append(images_per_s(call, bench_x))
                print(f"{name} threads={threads}: {speeds[-1]:,.0f} img/s", file=sys.stderr, flush=True)
            if name == "keras":
                reference = probs
            a = agreement(reference if reference is not None else probs, probs, test.labels)
            size_mb = f"{size / 1e6:.2f}" if size else "(.keras)"
            if name == "keras":
                keras_speed = speeds[1]
            base = f"{speeds[1] / keras_speed:.2f}" if keras_speed else "-"
            rows.append(
                f"| {name} | {speeds[0]:,.0f} | {speeds[1]:,.0f} | {base} | {a['argmax_agreement']:.4f} | "
                f"{a['max_abs_diff']:.4f} | {a['accuracy']:.4f} | {size_mb} |"
            )
    print(
        "| runtime | img/s 1 thread | img/s 2 threads | × keras (2 threads) | argmax agreement | max abs dp | accuracy | file MB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
