"""``mnist-batch data``: inspect and export data sets."""

from __future__ import annotations

import argparse
import json

from mnist_batch.cli.common import EXIT_CODES, HelpFormatter, add_verbosity
from mnist_batch.constants import SPLITS
from mnist_batch.data import DATASET_SPECS, load_dataset
from mnist_batch.data.class_names import parse_class_names, with_class_names
from mnist_batch.data.export import EXPORT_FORMATS, export_images

DATASET_HELP = "data set: " + " | ".join(DATASET_SPECS)


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser(
        "data",
        help="inspect data sets and export them as image folders",
        description="Inspect data sets and export them as image folders.\n\n"
        "Examples:\n"
        "  mnist-batch data info sample\n"
        "  mnist-batch data export-images sample --split test --out out/test_images",
        epilog=EXIT_CODES,
        formatter_class=HelpFormatter,
    )
    add_verbosity(data)
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    info = data_sub.add_parser(
        "info",
        help="counts per split and class",
        description="Print counts per split and class.\n\nExample:\n"
        "  mnist-batch data info sample\n  mnist-batch data info idx:/usr/share/datasets/fashion-mnist --json",
        epilog=EXIT_CODES,
        formatter_class=HelpFormatter,
    )
    add_verbosity(info)
    info.add_argument("dataset", nargs="?", default="sample", help=DATASET_HELP)
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument("--class-names", default=None, help="comma-separated names, or a file with one per line")
    info.set_defaults(run=run_info)

    export = data_sub.add_parser(
        "export-images",
        help="write a split as DIR/<label>/<index>.png",
        description="Write one split as image files DIR/<label>/<index>.<format> (deterministic).\n\n"
        "Example:\n  mnist-batch data export-images sample --split test --out out/test_images",
        epilog=EXIT_CODES,
        formatter_class=HelpFormatter,
    )
    add_verbosity(export)
    export.add_argument("dataset", nargs="?", default="sample", help=DATASET_HELP)
    export.add_argument("--split", default="test", choices=SPLITS, help="which split")
    export.add_argument("--out", required=True, help="destination directory (missing or empty)")
    export.add_argument("--format", default="png", choices=EXPORT_FORMATS, help="png is lossless; jpg is lossy")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    export.set_defaults(run=run_export)


def run_info(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.dataset)
    if args.class_names:
        dataset = with_class_names(dataset, parse_class_names(args.class_names))
    counts = dataset.counts()
    if args.json:
        print(
            json.dumps(
                {
                    "dataset": dataset.name,
                    "source": dataset.source,
                    "class_names": list(dataset.class_names),
                    "splits": {s: {"total": sum(c), "per_class": c} for s, c in counts.items()},
                },
                indent=2,
            )
        )
        return 0
    width = max(5, *(len(n) for n in dataset.class_names))
    print(f"data set: {dataset.name}")
    print(f"source:   {dataset.source}")
    header = f"{'class':<{width}} " + " ".join(f"{s:>10}" for s in counts)
    print(header)
    print("-" * len(header))
    for i, name in enumerate(dataset.class_names):
        print(f"{name:<{width}} " + " ".join(f"{c[i]:>10,}" for c in counts.values()))
    print("-" * len(header))
    print(f"{'total':<{width}} " + " ".join(f"{sum(c):>10,}" for c in counts.values()))
    return 0


def run_export(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.dataset)
    manifest = export_images(dataset, args.split, args.out, fmt=args.format, overwrite=args.overwrite)
    print(
        f"exported {manifest['count']:,} {args.split} images of {dataset.name} to {args.out}/<label>/ ({args.format})"
    )
    return 0
