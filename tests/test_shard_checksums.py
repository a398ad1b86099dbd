"""Page checksums (issue 33, item 3): every shard's pages carry their CRC-32, verified on read, and
``runs verify`` decodes every column of every shard, so a flipped bit inside a page is found.

Before: shards had no page checksums and ``runs verify`` read only the footers and the ``path``
column, so one flipped byte in the ``probabilities`` pages passed verification and read back as
other numbers (snappy checks nothing).
"""

from __future__ import annotations

import pathlib

import pyarrow.parquet as pq
import pytest

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.cli import main as cli_main  # noqa: E402
from mnist_batch.runstore import shards  # noqa: E402

tiny_model = scoring_fixtures.tiny_litert_model  # the CLI scores it without TensorFlow
sample_data = scoring_fixtures.sample_data
write_inputs = scoring_fixtures.write_train_digits
pytestmark = pytest.mark.slow  # each scores a run through the CLI in-process (a few seconds)


def flip_a_page_byte(shard: pathlib.Path, column: str) -> None:
    """One bit flipped in the middle of ``column``'s first column chunk (its page data, past the header)."""
    meta = pq.ParquetFile(shard).metadata
    group = meta.row_group(0)
    (chunk,) = [group.column(i) for i in range(group.num_columns) if group.column(i).path_in_schema.startswith(column)]
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    at = start + chunk.total_compressed_size * 3 // 4
    data = bytearray(shard.read_bytes())
    data[at] ^= 0x10
    shard.write_bytes(bytes(data))


def test_a_flipped_bit_in_a_page_is_found_by_runs_verify(tiny_model, sample_data, tmp_path, capsys):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 40)
    argv = ["score", "--model", str(tiny_model), "--input", str(inputs), "--output", str(root), "--layout", "runs",
            "--run-id", "r1", "--run-date", "2026-06-01"]  # fmt: skip
    assert cli_main(argv) == 0
    assert cli_main(["runs", "verify", str(root)]) == 0
    capsys.readouterr()
    (shard,) = (root / "predictions" / "dt=2026-06-01" / "run=r1").glob("*.parquet")
    before = pq.ParquetFile(shard).read().column("probabilities").to_pylist()
    flip_a_page_byte(shard, "probabilities")
    with pytest.raises(OSError, match="(?i)crc|checksum"):
        shards.read_shard(str(shard))
    assert cli_main(["runs", "verify", str(root)]) == 1
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if str(shard) in line]
    assert len(bad) == 1 and "unreadable shard" in bad[0] and ("CRC" in bad[0] or "checksum" in bad[0]), out
    # What a reader that does not verify sees: the footer is intact, the numbers may silently differ.
    try:
        after = pq.ParquetFile(shard).read().column("probabilities").to_pylist()
    except OSError:
        after = None  # snappy noticed this one
    assert after != before
