"""``mnist-batch predict``: classify a few image files and print class, confidence and top-3."""

from __future__ import annotations

import argparse
import pathlib
import sys

from mnist_batch.cli.common import HelpFormatter, add_verbosity, slow_step
from mnist_batch.constants import AUTO_RUNTIME, RUNTIME_CHOICES
from mnist_batch.errors import MnistBatchError
from mnist_batch.models.runtimes import RUNTIME_HELP
from mnist_batch.review import check_review_threshold
from mnist_batch.trust import check_threshold, describe

EXIT_SOME_FAILED = 1

EPILOG = """Each image gets the scoring preprocessing (decode any format, dark-on-light scans inverted,
background removed, cropped to the ink, fitted to 20 px, centred in 28x28 by centre of mass).
Unreadable files print one `mnist-batch predict: error: FILE: reason` line each on stderr; the exit
code is 1 when any file failed (the others are still classified), 2 for a bad model.

Exit codes: 0 every file classified; 1 some file failed; 2 bad argument or model.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files (class, confidence, top-3)",
        description="Classify image files and print class, confidence and top-3.\n\nExamples:\n"
        "  mnist-batch predict my_digit.jpg --model out/demo/models/cnn.keras\n"
        "  mnist-batch predict photo.jpg --model out/demo/models/cnn.keras --show-preprocessed seen.png",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--model", required=True, metavar="PATH.keras", help="exported model (card beside it)")
    p.add_argument("--top", type=int, default=3, help="how many classes to list")
    p.add_argument(
        "--show-preprocessed",
        metavar="OUT.png",
        default=None,
        help="save the 28x28 image the model saw (several images: OUT_1.png, OUT_2.png, ...)",
    )
    p.add_argument("--runtime", choices=RUNTIME_CHOICES, default=AUTO_RUNTIME, help=RUNTIME_HELP)
    p.add_argument(
        "--not-digit-threshold",
        type=float,
        default=None,
        metavar="T",
        help="not a digit from this not-digit score on (0 < T <= 1); default: the model card's",
    )
    p.add_argument(
        "--review-threshold",
        type=float,
        default=None,
        metavar="T",
        help="low confidence (for review) below this confidence (0 <= T <= 1); default: the model card's",
    )
    add_verbosity(p)
    p.set_defaults(run=run)


def preprocessed_path(base: str, index: int, count: int) -> pathlib.Path:
    """``seen.png`` for one image; ``seen_1.png``, ``seen_2.png``, ... for several."""
    path = pathlib.Path(base)
    return path if count == 1 else path.with_name(f"{path.stem}_{index + 1}{path.suffix or '.png'}")


def run(args: argparse.Namespace) -> int:
    with slow_step(args, "loading the model runtime ..."):
        from mnist_batch.predict import Failure, predict_files, save_preprocessed

    if args.not_digit_threshold is not None:
        check_threshold(args.not_digit_threshold, "--not-digit-threshold", MnistBatchError)
    check_review_threshold(args.review_threshold, "--review-threshold", MnistBatchError)
    results = predict_files(args.model, args.images, args.runtime, args.not_digit_threshold, args.review_threshold)
    failed = 0
    for i, r in enumerate(results):
        if isinstance(r, Failure):
            failed += 1
            print(f"mnist-batch predict: error: {r.path}: {r.message}", file=sys.stderr, flush=True)
            continue
        top = ", ".join(f"{name} {p:.4f}" for name, p in r.top(max(1, args.top)))
        flags = (
            ("not a digit" + (f": score {r.not_digit_score:.4f}" if r.not_digit else ""), r.not_digit),
            (f"low confidence: below {r.review_threshold:g}, for review", r.low_confidence),
            ("blank", r.image.blank),
            ("dark-on-light, inverted", r.image.inverted),
        )
        notes = [n for n, on in flags if on]
        note = f"  [{'; '.join(notes)}]" if notes else ""
        print(
            f"{r.path}: {r.class_names[r.label]} (confidence {r.confidence:.4f})  top-{args.top}: {top}{note}",
            flush=True,
        )
        if args.show_preprocessed:
            saved = save_preprocessed(r.image, preprocessed_path(args.show_preprocessed, i, len(results)))
            print(f"  model input (28x28): {saved}")
    if any(not isinstance(r, Failure) and r.not_digit is None for r in results):
        print(describe(None, "none"))  # after the answers: one line, whatever the number of images
    return EXIT_SOME_FAILED if failed else 0
