"""Dead-letter records: a rejected event with its reason and where it came from.

Bad input never crashes a worker and is never silently lost: every rejection becomes one
record on the dead-letter topic (``schemas/dead-letter.json``) and moves
``driftstream_dead_letters_total{topic, reason}``.

>>> from stream.core.events import Rejection
>>> rec = dead_letter_record(Rejection("invalid_json", "not valid JSON", b"{oops"),
...                          topic="predictions", partition=2, offset=41, now=1.0, max_bytes=3)
>>> rec["source"], rec["size"], rec["truncated"], rec["value_b64"]
({'topic': 'predictions', 'partition': 2, 'offset': 41, 'index': None}, 5, True, 'e29v')
"""

from __future__ import annotations

import base64
from typing import Any

from stream.core.events import Rejection

__all__ = ["dead_letter_record"]


def dead_letter_record(
    rejection: Rejection,
    *,
    topic: str,
    partition: int,
    offset: int,
    now: float,
    max_bytes: int,
) -> dict[str, Any]:
    """The dead-letter record of ``rejection``; keeps at most ``max_bytes`` of the
    original bytes (``truncated`` says so, ``size`` gives the full length).

    ``offset`` is the offset of the message that carried the event (not the next one).
    """
    raw = rejection.raw
    return {
        "schema_version": 1,
        "reason": rejection.reason,
        "detail": rejection.detail,
        "source": {"topic": topic, "partition": partition, "offset": offset,
                   "index": rejection.index},
        "size": len(raw),
        "truncated": len(raw) > max_bytes,
        "value_b64": base64.b64encode(raw[:max_bytes]).decode("ascii"),
        "ts": now,
    }
