"""Reading genome lists: one genome per line, or a CSV with a ``genome`` column ('-' = stdin)."""
from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

csv.field_size_limit(1 << 30)


def _open(path: str | Path) -> TextIO:
    if str(path) == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _is_csv(first_line: str, path: str | Path) -> bool:
    if str(path).lower().endswith(".csv"):
        return True
    header = next(csv.reader([first_line]), [])
    return "genome" in header and "(" not in first_line


def iter_genomes(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(index, genome)`` in file order; streams, so the file may be any size.

    Blank lines of a plain list are skipped but still counted, so ``index`` is the 0-based
    position among non-blank genomes in the input.
    """
    with _open(path) as handle:
        first = handle.readline()
        if not first:
            return
        if _is_csv(first, path):
            reader = csv.DictReader(_chain(first, handle))
            if not reader.fieldnames or "genome" not in reader.fieldnames:
                raise ValueError(f"{path}: CSV has no 'genome' column")
            for i, row in enumerate(reader):
                yield i, row["genome"] or ""
            return
        index = 0
        for line in _chain(first, handle):
            line = line.rstrip("\r\n")
            if line.strip():
                yield index, line
                index += 1


def _chain(first: str, handle: TextIO) -> Iterator[str]:
    yield first
    yield from handle
