"""Atomic file writes (temp file in the same folder + rename): a crash never leaves a torn file.

Kept free of torch so the build's parent process can use it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write via ``write(tmp_path)`` then rename, so a crash never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON file written atomically (temp file + rename)."""
    atomic_write_bytes(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, allow_nan=True)))


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every directory bottom-up (so a rename of
    ``root`` published after this survives a power cut with its contents)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_dir(tmp: Path, final: Path, replace: bool) -> None:
    """Move the finished (fsync'd) directory ``tmp`` to ``final`` in one rename. Without
    ``replace`` an existing ``final`` is never touched (``FileExistsError``): a directory that
    something else already points at stays exactly as it was."""
    if final.exists():
        if not replace:
            raise FileExistsError(f"{final} exists; refusing to overwrite it")
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        import shutil
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    fsync_dir(final.parent)
