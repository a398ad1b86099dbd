"""``mnist-batch runs``: list the committed runs of a runs root; clean up after killed launches; verify shards."""

from __future__ import annotations

import argparse
import datetime
import json

from mnist_batch.cli.common import HelpFormatter, add_verbosity

DESCRIPTION = """\
Look after a runs root (score --layout runs --output ROOT).

  list   the committed runs (dt, run id, files scored / errors / skipped, model id)
  clean  complete commits cut short by a crash (roll back those whose shards are gone),
         delete the staging folders and leases of launches that are no longer running
         (live launches are left alone; safe any time)
  verify re-open every shard of every committed run: footers readable, predictions and
         errors rows equal to the summary's counts, manifest keys equal to the predictions +
         errors paths; one line per bad shard; with --quarantine, move each bad run to
         ROOT/_quarantine/dt=D/run=ID/ (out of readers' view; incremental runs rescore its files)

Examples:
  mnist-batch runs list out/runs
  mnist-batch runs clean out/runs
  mnist-batch runs verify out/runs --quarantine

Exit codes: 0 ok (verify: every run sound); 1 verify found bad runs (quarantined with
--quarantine); 2 bad argument or not a runs root.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "runs",
        help="list committed runs of a runs root; clean up after killed launches",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    p.add_argument("action", choices=("list", "clean", "verify"), help="what to do")
    p.add_argument("root", help="the runs root (--output of score --layout runs)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--quarantine",
        action="store_true",
        help="verify: move each bad run to ROOT/_quarantine/ (out of readers' view)",
    )
    add_verbosity(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mnist_batch.runstore.errors import storage_step

    with storage_step(f"runs {args.action} {args.root}"):  # a store failing mid-way: one line, exit 2
        return run_action(args)


def run_action(args: argparse.Namespace) -> int:
    from mnist_batch.errors import MnistBatchError
    from mnist_batch.runstore import fs, runs
    from mnist_batch.tables import LAYOUT_FILE

    fs.configure()  # Beam's filesystems and the S3 client from the environment (AWS_* variables)
    fs.check_reachable(args.root, f"runs: {args.root}")  # a bucket's refusal in one line, not a traceback
    if not fs.exists(fs.join(args.root, LAYOUT_FILE)):
        raise MnistBatchError(f"runs: {args.root} is not a runs root (no {LAYOUT_FILE})")
    if args.quarantine and args.action != "verify":
        raise MnistBatchError("runs: --quarantine is for runs verify")
    if args.action == "verify":
        return verify(args)
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
                why = (
                    "its launch failed before the commit point"
                    if path in result.get("unfenced", [])
                    else "its shards were gone"
                )
                print(f"  rolled back ({why}; the run is not committed): {path}")
            for path in result.get("uncommitted", []):
                print(f"  uncommitted too (the earlier run it was replacing lost files with it): {path}")
            for path in result["deleted"] + result["stale_leases"]:
                print(f"  {path}")
        return 0
    rows = []
    for run in runs.committed_runs(args.root):
        try:
            summary = json.loads(fs.read_text(fs.join(run.meta_dir, "summary.json")))
        except Exception as exc:  # noqa: BLE001 -- one damaged run is a row, not the end of the listing
            summary = {"unreadable": f"{type(exc).__name__}: {exc}"}
        summary = summary if isinstance(summary, dict) else {"unreadable": "not a JSON object"}
        counts = summary.get("counts") or {}
        rows.append(
            {
                "dt": run.dt,
                "run": run.run_id,
                "scored": counts.get("scored"),
                "errors": counts.get("errors"),
                "skipped": counts.get("skipped"),
                "model_id": summary.get("model_id"),
                "runtime": summary.get("runtime"),
                "committed_at": summary.get("committed_at"),
                "path": run.meta_dir,
                **({"unreadable": summary["unreadable"]} if "unreadable" in summary else {}),
            }
        )
    rows.sort(key=commit_order)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'dt':<10}  {'run':<28} {'scored':>9} {'errors':>7} {'skipped':>8}  {'model_id':<12}  {'runtime':<7}  path")
    for r in rows:
        print(
            f"{r['dt']:<10}  {r['run']:<28} {r['scored'] or 0:>9,} {r['errors'] or 0:>7,} "
            f"{r['skipped'] or 0:>8,}  {(r['model_id'] or 'unreadable')[:12]:<12}  {r['runtime'] or '':<7}  {r['path']}"
        )
    print(f"{len(rows)} committed run(s) under {args.root}")
    return 0


def commit_order(row: dict) -> tuple:
    """Runs in the order they were committed (a backfill of an old ``dt`` comes last); unreadable first."""
    try:
        when = datetime.datetime.fromisoformat(row["committed_at"]).timestamp()
    except (TypeError, ValueError):
        when = float("-inf")
    return (when, row["dt"], row["run"])


def verify(args: argparse.Namespace) -> int:
    """``runs verify``: one line per problem; exit 1 when any run is bad."""
    from mnist_batch.runstore import verify as checks

    found, problems = checks.verify(args.root)
    bad = {(p.run.dt, p.run.run_id): p.run for p in problems}
    moved = {key: checks.quarantine(run) for key, run in bad.items()} if args.quarantine else {}
    if args.json:
        rows = [{"dt": p.run.dt, "run": p.run.run_id, "path": p.path, "problem": p.what} for p in problems]
        print(
            json.dumps(
                {"runs": len(found), "bad_runs": len(bad), "problems": rows, "quarantined": list(moved.values())},
                indent=2,
            )
        )
    else:
        for problem in problems:
            print(f"BAD {problem.line()}")
        for path in moved.values():
            print(f"quarantined: moved to {path}")
        print(f"verified {len(found)} committed run(s) under {args.root}: {len(bad)} bad, {len(problems)} problem(s)")
    return 1 if problems else 0
