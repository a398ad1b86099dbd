"""The documented commands work as written, and the CLI is quiet by default.

Every code block in README.md and docs/*.md preceded by ``<!-- runnable -->`` (optionally
``<!-- runnable expect: TEXT | TEXT -->``) is run, command by command, with ``bash`` from the
root of a tree shaped like ``make demo``'s outputs (``out/demo/models/cnn.keras`` + card,
``out/demo/test_images``, ``out/demo/scored``), built once per session with a small fast model
(with its LiteRT file, as the demo's) instead of the demo's minutes of training. Each command must
exit 0 and the block's output must contain each expected text.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import scoring_fixtures

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "deploy" / "README.md"]
MARKER = re.compile(r"<!-- runnable(?: expect: (?P<expect>.*?))? -->\s*\n```[a-z]*\n(?P<body>.*?)\n```", re.DOTALL)
DEMO_SCORE = [
    "score",
    "--model",
    "out/demo/models/cnn.keras",
    "--input",
    "out/demo/test_images",
    "--output",
    "out/demo/scored",
    "--overwrite",
]
"""The demo's scoring command (Makefile), run with the real console script."""

OWN_LINES = re.compile(
    r"^(scored [\d,]+ of [\d,]+ images|runtime: (keras|litert) \(|accuracy [\d.]+, macro-F1|outputs: |"
    r"mnist-batch score: progress: |not-digit check: |review: low_confidence below |engine: (inprocess|beam) \()"
)
"""Every line `mnist-batch score` itself prints at the default verbosity."""


@dataclasses.dataclass
class Block:
    document: str
    commands: list[str]
    expect: list[str]


HEREDOC = re.compile(r"<<-?\s*'?(?P<tag>\w+)'?\s*$")


def commands_of(body: str) -> list[str]:
    """Logical shell commands of a code block: continuation lines joined, comment lines dropped, a
    here-document (``python - <<'PY'`` ... ``PY``) kept whole with its lines."""
    commands: list[str] = []
    lines = iter(re.sub(r"\\\n\s*", " ", body).splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        heredoc = HEREDOC.search(line)
        if heredoc:
            text = [line]
            for more in lines:
                text.append(more)
                if more.strip() == heredoc["tag"]:
                    break
            commands.append("\n".join(text))
            continue
        commands.append(line.strip())
    return commands


def runnable_blocks(path: pathlib.Path) -> list[Block]:
    """The blocks of a Markdown file marked ``<!-- runnable -->``."""
    blocks = []
    for m in MARKER.finditer(path.read_text(encoding="utf-8")):
        expect = [e.strip() for e in (m["expect"] or "").split(" | ") if e.strip()]
        blocks.append(Block(path.relative_to(ROOT).as_posix(), commands_of(m["body"]), expect))
    return blocks


def console_script() -> str:
    return str(pathlib.Path(sys.executable).parent / "mnist-batch")


def cli_env() -> dict[str, str]:
    """The environment of a user who ran ``source .venv/bin/activate``."""
    env = dict(os.environ)
    env["PATH"] = str(pathlib.Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as on a fresh shell: the CLI must be quiet by itself
    return env


@dataclasses.dataclass
class DemoTree:
    root: pathlib.Path
    score: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def demo_tree(tmp_path_factory) -> DemoTree:
    """A tree shaped like ``make demo``'s outputs, with a small model; the scoring step is the real CLI."""
    from mnist_batch.data import load_dataset
    from mnist_batch.data.export import export_images
    from mnist_batch.report import build_report

    root = tmp_path_factory.mktemp("demo")
    scoring_fixtures.train_tiny_model(root / "out/demo/models", name="cnn", litert=True)
    export_images(load_dataset("sample"), "test", root / "out/demo/test_images")
    score = subprocess.run(
        [console_script(), *DEMO_SCORE], cwd=root, env=cli_env(), capture_output=True, text=True, timeout=600
    )
    assert score.returncode == 0, score.stdout + score.stderr
    build_report(root / "out/demo/scored")
    return DemoTree(root, score)


@pytest.mark.slow
def test_score_prints_no_tensorflow_or_beam_line_by_default(demo_tree):
    """Line by line: what `score` prints on a demo-like folder is its own output only."""
    lines = demo_tree.score.stdout.splitlines() + demo_tree.score.stderr.splitlines()
    foreign = [line for line in lines if not OWN_LINES.match(line)]
    assert not foreign, "\n".join(foreign)
    assert any(line.startswith("scored 2,000 of 2,000 images") for line in lines)


def test_the_documents_mark_their_runnable_blocks():
    readme = runnable_blocks(ROOT / "README.md")
    assert len(readme) >= 4 and all(b.commands and b.expect for b in readme)
    commands = [c for b in readme for c in b.commands]
    assert any(c.startswith("mnist-batch score") for c in commands)
    assert any(c.startswith("mnist-batch predict") for c in commands)
    assert not [c for c in commands if "models/cnn.keras" in c and "out/demo/models/cnn.keras" not in c]


USES_A_MODEL = re.compile(
    r"(mnist-batch (score|predict|evaluate|export)\b.*?|pipelines/score.py.*?)(--model |export )(?P<path>\S+)"
)


def test_commands_that_read_a_model_name_one_that_exists_after_make_demo():
    """Docs and --help examples: a local model path is `make demo`'s, or the line says to substitute (gs://...)."""
    from mnist_batch.cli import build_parser

    texts = {d.relative_to(ROOT).as_posix(): d.read_text(encoding="utf-8") for d in DOCUMENTS}
    texts["deploy/run_scheduled.sh"] = (ROOT / "deploy" / "run_scheduled.sh").read_text(encoding="utf-8")
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "score" in a.choices)
    for name in ("score", "monitor", "predict", "evaluate", "export"):
        texts[f"{name} --help"] = sub.choices[name].format_help()
    bad = []
    for where, text in texts.items():
        joined = re.sub(r"\\\n\s*", " ", text)
        made_here = {
            m.strip("`'\"") for m in re.findall(r"train .*?--export (\S+)", joined)
        }  # trained in that document
        for line in joined.splitlines():
            for m in USES_A_MODEL.finditer(line):
                path = m["path"].strip("`'\"")
                if "://" in path or path[:1] in "$/" or path[:1].isupper() or "out/demo/models/" in path:
                    continue  # a URI, a variable, an absolute path, a placeholder (PATH.keras), or the demo's model
                if path in made_here:
                    continue
                bad.append(f"{where}: {line.strip()}")
    assert not bad, "\n".join(bad)
    assert runnable_blocks(ROOT / "deploy" / "README.md"), "deploy/README's nightly pair is run as written"


READING_ORDER = ["README.md", "docs/scoring.md", "docs/evaluation.md", "docs/training.md", "docs/api.md",
                 "deploy/README.md"]  # fmt: skip
"""The order a reader follows the pages in after ``make demo`` (the rest after these)."""


def in_reading_order() -> list[str]:
    names = [d.relative_to(ROOT).as_posix() for d in DOCUMENTS if runnable_blocks(d)]
    return sorted(names, key=lambda n: (READING_ORDER.index(n) if n in READING_ORDER else len(READING_ORDER), n))


def run_blocks(document: str, tree: pathlib.Path, env: dict[str, str]) -> None:
    """A document's runnable blocks, in order, in ``tree``: each command exits 0, each block prints what it expects."""
    for block in runnable_blocks(ROOT / document):
        output = ""
        for command in block.commands:
            done = subprocess.run(
                ["bash", "-c", command], cwd=tree, env=env, capture_output=True, text=True, timeout=600
            )
            output += done.stdout + done.stderr
            assert done.returncode == 0, (
                f"{document}: `{command}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        missing = [e for e in block.expect if e not in output]
        assert not missing, f"{document}: {block.commands} printed no {missing}:\n{output}"


@pytest.mark.slow
def test_the_documents_run_in_order_on_one_tree(demo_tree, tmp_path):
    """A reader after ``make demo`` who follows README, then docs/, then deploy/README, block by block on
    one tree: no page collides with what an earlier one left (an output that exists, a history
    that makes a later run score nothing)."""
    shutil.copytree(demo_tree.root / "out", tmp_path / "out")
    env = cli_env()
    for document in in_reading_order():
        run_blocks(document, tmp_path, env)


def test_every_page_with_runnable_blocks_is_in_the_reading_order():
    assert set(in_reading_order()) <= set(READING_ORDER), "add the page to READING_ORDER where a reader meets it"


def table_row(document: str, first_cell: str) -> str:
    """The Markdown table row of ``document`` whose first cell is ``first_cell``."""
    text = (ROOT / document).read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"{document}: {len(rows)} rows for {first_cell}"
    return rows[0]


def test_the_column_tables_name_every_column_of_every_output_table():
    """docs/scoring.md and docs/evaluation.md list each table's columns as tables.py declares them."""
    from mnist_batch.tables import EVALUATION_PREDICTIONS_SCHEMA, TABLES

    missing = [
        f"docs/scoring.md {name}/: {column}"
        for name, schema in TABLES.items()
        for column in schema.names
        if f"`{column}`" not in table_row("docs/scoring.md", f"`{name}/`")
    ]
    row = table_row("docs/evaluation.md", "`predictions.parquet`")
    missing += [
        f"docs/evaluation.md: {c}" for c in EVALUATION_PREDICTIONS_SCHEMA.names if not re.search(rf"\b{c}\b", row)
    ]
    assert not missing, missing


def test_the_docs_say_which_file_each_model_id_names():
    for document in ("docs/scoring.md", "docs/evaluation.md"):
        text = re.sub(r"\s+", " ", (ROOT / document).read_text(encoding="utf-8"))
        assert "`model_id` is the sha256 of the bytes that scored" not in text
        assert "rows' `model_id` is the file that scored" not in text
        assert "`runtime_model_id`" in text and "the `.keras` file's sha256" in text
