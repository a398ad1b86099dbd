"""``mnist-batch runs``: list the committed runs of a runs root; clean up after killed launches."""

from __future__ import annotations

import argparse
import json

from mnist_batch.cli.common import HelpFormatter, add_verbosity

DESCRIPTION = """\
Look after a runs root (score --layout runs --output ROOT).

  list   the committed runs (dt, run id, files scored / errors / skipped, model id)
  clean  complete commits cut short by a crash (roll back those whose shards are gone),
         delete the staging folders and leases of launches that are no longer running
         (live launches are left alone; safe any time)

Examples:
  mnist-batch runs list out/runs
  mnist-batch runs clean out/runs

Exit codes: 0 ok; 2 bad argument or not a runs root.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "runs",
        help="list committed runs of a runs root; clean up after killed launches",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    p.add_argument("action", choices=("list", "clean"), help="what to do")
    p.add_argument("root", help="the runs root (--output of score --layout runs)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_verbosity(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mnist_batch.errors import MnistBatchError
    from mnist_batch.runstore import fs, runs
    from mnist_batch.tables import LAYOUT_FILE

    if not fs.exists(fs.join(args.root, LAYOUT_FILE)):
        raise MnistBatchError(f"runs: {args.root} is not a runs root (no {LAYOUT_FILE})")
    if args.action == "clean":
        result = runs.clean(args.root)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(
                f"completed {len(result['completed'])} cut-short commit(s), rolled back "
                f"{len(result['rolled_back'])} aborted commit(s), deleted {len(result['deleted'])} "
                f"staging folder(s) and {len(result['stale_leases'])} stale lease(s) under {args.root}"
            )
            for path in result["completed"]:
                print(f"  rolled forward: {path}")
            for path in result["rolled_back"]:
                print(f"  rolled back (its shards were gone; the run is not committed): {path}")
            for path in result["deleted"] + result["stale_leases"]:
                print(f"  {path}")
        return 0
    rows = []
    for run in runs.committed_runs(args.root):
        summary = json.loads(fs.read_text(fs.join(run.meta_dir, "summary.json")))
        counts = summary.get("counts", {})
        rows.append(
            {
                "dt": run.dt,
                "run": run.run_id,
                "scored": counts.get("scored"),
                "errors": counts.get("errors"),
                "skipped": counts.get("skipped"),
                "model_id": summary.get("model_id"),
                "committed_at": summary.get("committed_at"),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'dt':<10}  {'run':<28} {'scored':>9} {'errors':>7} {'skipped':>8}  model_id")
    for r in rows:
        print(
            f"{r['dt']:<10}  {r['run']:<28} {r['scored'] or 0:>9,} {r['errors'] or 0:>7,} "
            f"{r['skipped'] or 0:>8,}  {(r['model_id'] or '')[:12]}"
        )
    print(f"{len(rows)} committed run(s) under {args.root}")
    return 0
