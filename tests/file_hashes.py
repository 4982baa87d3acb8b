"""Content hashes of files, to check that a run left its inputs as they were."""
from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(*roots: Path) -> dict[str, str]:
    """SHA-256 of every file under ``roots`` (a root may be a file), by path; bytecode caches left out."""
    digests = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts:
                continue
            with open(path, "rb") as fh:
                digests[str(path)] = hashlib.file_digest(fh, "sha256").hexdigest()
    return digests


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Paths whose content differs, or that exist in only one of the two digests."""
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
