"""Dataflow flex-template entry point (``FLEX_TEMPLATE_PYTHON_PY_FILE`` in deploy/Dockerfile).

The launcher passes the template's parameters as ``--name=value`` with the names of
``metadata.json`` (underscores, e.g. ``--run_id=d20260101``, ``--incremental=true``). This file
turns them into ``mnist-batch score --layout runs`` options (``--run-id d20260101``,
``--incremental``), passes everything else (``--runner``, ``--project``, ``--sdk_container_image``,
...) to Beam, and submits the job **without waiting** for it, as flex templates require: the run
is committed by the pipeline itself (``_SUCCESS`` is written by its last step).
"""

from __future__ import annotations

import argparse
import sys

from mnist_batch.errors import MnistBatchError
from mnist_batch.scoring.options import add_arguments, parse

TRUE_VALUES = ("true", "1", "yes")
FALSE_VALUES = ("false", "0", "no", "")


def build_parser() -> tuple[argparse.ArgumentParser, list[argparse.Action]]:
    """The options of ``mnist-batch score`` (the template's parameters are a subset of them), and their actions."""
    parser = argparse.ArgumentParser(prog="flex_main.py", allow_abbrev=False)  # --labels is Dataflow's
    return parser, add_arguments(parser)


def flag_actions(actions: list[argparse.Action]) -> dict[str, argparse.Action]:
    """``run_id`` -> the action of ``--run-id``, for every long option."""
    return {
        option[2:].replace("-", "_"): action
        for action in actions
        for option in action.option_strings
        if option.startswith("--")
    }


def translate(argv: list[str], actions: list[argparse.Action] | None = None) -> list[str]:
    """Template parameters -> command-line arguments of ``mnist-batch score``.

    ``--name=value`` for an option of the command becomes ``--name-with-hyphens=value``; a
    boolean option (``--incremental``) becomes the bare flag when true and is dropped when false.
    Other arguments (Beam's) are kept as they are.

    Raises:
      MnistBatchError: a boolean parameter with a value that is not true/false.
    """
    by_name = flag_actions(actions if actions is not None else build_parser()[1])
    out: list[str] = []
    for arg in argv:
        name, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        action = by_name.get(name)
        if not sep or action is None:
            out.append(arg)
            continue
        flag = next(o for o in action.option_strings if o.startswith("--"))
        if action.nargs == 0:  # an on/off flag (store_true)
            if value.lower() in TRUE_VALUES:
                out.append(flag)
            elif value.lower() not in FALSE_VALUES:
                raise MnistBatchError(f"--{name}={value}: expected true or false")
            continue
        out.append(f"{flag}={value}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser, actions = build_parser()
    try:
        args, beam_args = parser.parse_known_args(translate(sys.argv[1:] if argv is None else argv, actions))
        args.layout = "runs"  # a template run is always a committed production run
        settings = parse(args, beam_args)
        from mnist_batch.scoring.launch import start

        submitted = start(settings, wait=False)  # unwritable output, unknown runner: refused before submitting
    except MnistBatchError as exc:
        print(f"flex_main: error: {exc}", file=sys.stderr)
        return 2
    print(f"submitted run {submitted['run_id']} -> {submitted['output']} (committed by the job: {submitted['marker']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
