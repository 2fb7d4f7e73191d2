"""Garbage-collector settings of the worker's processes (the worker and its ingest
children)."""

from __future__ import annotations

__all__ = ["tune_gc"]


def tune_gc() -> None:
    """Make the cyclic garbage collector run less often.

    Every fetched batch allocates hundreds of thousands of short-lived, acyclic containers
    (decoded events), which reference counting frees. With CPython's default thresholds
    (700, 10, 10) they still trigger a full collection of the whole heap every few
    batches, and profiles of a busy worker showed that cost landing on whichever line
    allocated. Objects alive after start-up are frozen out of collections, and young
    collections wait for 50k allocations.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
