"""Shared fixtures: test data paths and the shared corpus beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CORPUS = Path(os.environ.get("WATCHER_CORPUS", ROOT.parent / "shared" / "corpus"))


def corpus_files() -> list[Path]:
    """Every dump file of the shared corpus; skips the test when the corpus is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS} (set WATCHER_CORPUS to its folder)")
    return sorted(p for p in CORPUS.rglob("*.md") if p.name != "SOURCES.md")


# Local HTTP servers (a scripted feed server, a forward proxy) for fetch, pipeline and daemon tests.
from .feedserver import feed_server, feed_servers, forward_proxy  # noqa: E402, F401
