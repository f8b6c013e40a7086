"""Parsing messages leaves nothing behind in the interpreter (bench.soak's slow heap creep).

CPython 3.11's type attribute cache (4096 entries, ``sys._clear_type_cache``) keeps a
reference to the attribute name of each lookup it caches, and it caches names that are not
interned: a C function that looks an attribute up by a C string leaves a fresh string in
the cache on every call, alive until its entry is taken by another lookup. ``json.loads``
with any keyword argument builds a new ``JSONDecoder`` a call, whose C scanner reads six of
its attributes that way: parsing every reply, ping and pong, ``messages.parse`` was a third
of what filled the cache in a streaming sender and half in a receiver, part of the slow
memory creep bench.soak measured (results/soak/memory.md).
"""
from __future__ import annotations

import collections
import json
import os
import sys
import tracemalloc

from splitcore.wire import messages as m

JSON_DIR = os.path.dirname(json.__file__)


def _json_blocks() -> int:
    """Blocks alive now that were allocated inside the json package."""
    snap = tracemalloc.take_snapshot()
    return sum(1 for t in snap.traces if os.path.dirname(t.traceback[-1].filename) == JSON_DIR)


def test_parsing_leaves_nothing_in_the_type_cache() -> None:
    texts = [m.dumps(m.Ping(1000.0 + i / 7)) for i in range(300)]
    texts += [m.dumps(m.Drop(i, 1000.0 + i, "stale")) for i in range(300)]
    churn: collections.deque[bytearray] = collections.deque(maxlen=1000)  # other allocations, as in a live process
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start(1)
    try:
        for i, text in enumerate(texts):
            assert m.parse(text).type in ("ping", "drop")
            churn.append(bytearray(i % 251 + 1))
        held = _json_blocks()
        sys._clear_type_cache()
        released = held - _json_blocks()
    finally:
        if not tracing:
            tracemalloc.stop()
    assert released == 0, f"{released} objects made by parsing {len(texts)} messages were held by the type cache"
