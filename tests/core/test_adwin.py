"""The ADWIN adapter (``stream/core/adwin.py``): detection, independence from how values
are batched, exact restore from a JSON snapshot, and bounded snapshot size."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import numpy as np
import pytest

from stream.core.adwin import AdwinDetector
from stream.errors import SnapshotError


def stationary(n: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, n)


def shifted(
    seed: int = 11, before: int = 6000, after: int = 6000, shift: float = 1.0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.0, 1.0, before), rng.normal(shift, 1.0, after)])


def batches(values: np.ndarray, sizes: Iterator[int]) -> Iterator[np.ndarray]:
    i = 0
    while i < values.size:
        n = next(sizes)
        yield values[i:i + n]
        i += n


def fixed(n: int) -> Iterator[int]:
    while True:
        yield n


def random_sizes(seed: int, high: int = 200) -> Iterator[int]:
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.integers(0, high))  # empty batches included


def roundtrip(det: AdwinDetector) -> AdwinDetector:
    return AdwinDetector.restore(json.loads(json.dumps(det.snapshot())))


@pytest.mark.parametrize("chunk", [1, 16, 32])
@pytest.mark.parametrize("seed", [1, 2])
def test_no_detection_on_a_stationary_stream(chunk, seed):
    det = AdwinDetector(chunk=chunk)
    values = stationary(20_000, seed)
    total = sum(det.update(b) for b in batches(values, fixed(1000)))
    assert total == det.n_detections == 0
    assert det.n_inputs == 20_000 // chunk
    assert det.estimation == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize(("shift", "chunk"), [(1.0, 32), (0.5, 32), (-2.0, 8), (3.0, 1)])
def test_detection_after_a_mean_shift(shift, chunk):
    values = shifted(shift=shift)
    det = AdwinDetector(chunk=chunk)
    first = None
    for i, b in enumerate(batches(values, fixed(100))):
        d = det.update(b)
        assert det.drift_detected == (d > 0)
        if d and first is None:
            first = i * 100
    assert det.n_detections >= 1
    assert first is not None and first >= 6000  # never before the shift
    assert first < 6000 + 3000  # and not long after it
    assert det.estimation == pytest.approx(shift, abs=0.25)  # the window moved on


def test_drift_detected_is_about_the_last_update_only():
    det = AdwinDetector(chunk=8)
    values = shifted(shift=3.0)
    for b in batches(values, fixed(64)):
        if det.update(b):
            break
    assert det.drift_detected
    det.update(np.full(8, 3.0))
    assert not det.drift_detected


def without_last_update_flag(snapshot: dict) -> dict:
    """``drift_detected`` says whether the *last* ``update`` call detected a change, so it
    depends on where that call started by definition; everything else must not."""
    return {k: v for k, v in snapshot.items() if k != "drift_detected"}


@pytest.mark.parametrize(
    "sizes",
    [lambda: fixed(7), lambda: fixed(1), lambda: fixed(31), lambda: fixed(33),
     lambda: random_sizes(1), lambda: random_sizes(2, high=3000)],
    ids=["7", "1", "31", "33", "random", "random_large"],
)
def test_batch_invariance(sizes):
    values = shifted(seed=5, shift=1.5)
    whole = AdwinDetector(chunk=32)
    whole_d = whole.update(values)
    split = AdwinDetector(chunk=32)
    split_d = 0
    for b in batches(values, sizes()):
        d = split.update(b)
        assert split.drift_detected == (d > 0)
        split_d += d
    assert whole.n_detections >= 1
    assert split_d == whole_d == whole.n_detections
    assert split.n_detections == whole.n_detections
    assert split.n_inputs == whole.n_inputs == values.size // 32
    assert without_last_update_flag(split.snapshot()) == without_last_update_flag(
        whole.snapshot())
    assert split.estimation == whole.estimation


@pytest.mark.parametrize(
    ("values", "cut"),
    [
        (shifted(seed=3), 1000),
        (shifted(seed=3), 1003),  # mid-chunk: a pending partial chunk
        (shifted(seed=3), 6100),  # just after the shift, before the detection
        (shifted(seed=3), 11_999),
        (stationary(9000), 4321),
        (shifted(seed=4, shift=-1.0), 0),
    ],
)
def test_restore_continues_identically(values, cut):
    original = AdwinDetector(chunk=32)
    original.update(values[:cut])
    restored = roundtrip(original)
    assert restored.snapshot() == original.snapshot()
    assert restored.estimation == pytest.approx(original.estimation)
    for b in batches(values[cut:], fixed(250)):
        assert restored.update(b) == original.update(b)
        assert restored.estimation == original.estimation
    assert restored.n_detections == original.n_detections
    assert restored.snapshot() == original.snapshot()


def first_detection_cut(values: np.ndarray, chunk: int) -> int:
    det = AdwinDetector(chunk=chunk)
    for i in range(0, values.size, chunk):
        if det.update(values[i:i + chunk]):
            return i + chunk
    raise AssertionError("no detection")


def test_restore_right_after_a_detection_continues_identically():
    values = shifted(seed=8, shift=2.0)
    cut = first_detection_cut(values, 32)
    original = AdwinDetector(chunk=32)
    original.update(values[:cut])
    assert original.drift_detected
    restored = roundtrip(original)
    assert restored.drift_detected
    for b in batches(values[cut:], fixed(100)):
        assert restored.update(b) == original.update(b)
    assert restored.snapshot() == original.snapshot()


def test_estimation_survives_restore_right_after_a_detection():
    values = shifted(seed=8, shift=2.0)
    cut = first_detection_cut(values, 32)
    original = AdwinDetector(chunk=32)
    original.update(values[:cut])
    assert original.estimation is not None
    assert roundtrip(original).estimation == original.estimation


@pytest.mark.parametrize(("chunk", "n", "max_history"), [(1, 5000, 256), (4, 20_000, 100)])
def test_history_cap_counts_dropped_inputs(chunk, n, max_history):
    det = AdwinDetector(chunk=chunk, max_history=max_history)
    det.update(stationary(n))
    assert det.n_detections == 0
    inputs = n // chunk
    assert det.n_inputs == inputs
    assert det.history_dropped == inputs - max_history
    kept = base64.b64decode(det.snapshot()["history_f32"])
    assert len(kept) == 4 * max_history  # float32 per input


@pytest.mark.parametrize("n", [31, 1_000, 50_031, 300_017])
def test_snapshot_size_is_bounded(n):
    det = AdwinDetector(chunk=32, max_history=256)
    det.update(stationary(n))
    snap = det.snapshot()
    assert len(json.dumps(snap)) < 2000
    assert len(base64.b64decode(snap["history_f32"])) <= 4 * 256
    assert len(base64.b64decode(snap["pending_f64"])) == 8 * (n % 32)


def test_snapshot_is_json_safe_and_versioned():
    det = AdwinDetector(delta=0.01, chunk=5, max_history=10)
    det.update(stationary(123))
    snap = det.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert (snap["kind"], snap["version"]) == ("adwin", 1)
    assert (snap["delta"], snap["chunk"], snap["max_history"]) == (0.01, 5, 10)
    back = roundtrip(det)
    assert (back.delta, back.chunk, back.max_history) == (0.01, 5, 10)


def good_snapshot() -> dict:
    det = AdwinDetector(chunk=4)
    det.update(stationary(103))
    return det.snapshot()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "ddm"}, "not an ADWIN snapshot"),
        ({"version": 2}, "not an ADWIN snapshot of version 1"),
        ({"version": None}, "not an ADWIN snapshot"),
        ({"history_f32": None}, "corrupt ADWIN snapshot"),
        ({"history_f32": "not base64!"}, "corrupt ADWIN snapshot"),
        ({"pending_f64": base64.b64encode(b"abc").decode()}, "corrupt ADWIN snapshot"),
        ({"n_detections": "many"}, "corrupt ADWIN snapshot"),
        ({"delta": 2.0}, "corrupt ADWIN snapshot"),
        ({"chunk": 0}, "corrupt ADWIN snapshot"),
    ],
)
def test_bad_snapshots_raise(change, message):
    data = {**good_snapshot(), **change}
    with pytest.raises(SnapshotError, match=message):
        AdwinDetector.restore(data)


@pytest.mark.parametrize("key", ["delta", "history_f32", "pending_f64", "n_inputs"])
def test_snapshot_missing_a_key_raises(key):
    data = good_snapshot()
    del data[key]
    with pytest.raises(SnapshotError, match="corrupt ADWIN snapshot"):
        AdwinDetector.restore(data)


@pytest.mark.parametrize(
    "kwargs",
    [{"delta": 0.0}, {"delta": 1.0}, {"chunk": 0}, {"max_history": 0}],
)
def test_invalid_parameters_raise(kwargs):
    with pytest.raises(ValueError, match="need 0 < delta < 1"):
        AdwinDetector(**kwargs)


class OneAtATime:
    """The definition the adapter follows, one ADWIN input at a time: river's ADWIN fed
    chunk means, a history of the inputs since the last detection, capped at
    ``max_history`` with each input dropped counted."""

    def __init__(self, chunk: int, max_history: int) -> None:
        from river.drift import ADWIN

        self.adwin = ADWIN(delta=0.002, clock=1)
        self.chunk, self.max_history = chunk, max_history
        self.pending: list[float] = []
        self.history: list[float] = []
        self.n_detections = self.n_inputs = self.dropped = 0
        self.estimation_after_drift: float | None = None

    def update(self, values: np.ndarray) -> int:
        self.pending += values.tolist()
        detections = 0
        while len(self.pending) >= self.chunk:
            chunk, self.pending = self.pending[:self.chunk], self.pending[self.chunk:]
            x = float(np.float32(np.mean(np.array(chunk))))
            self.adwin.update(x)
            self.n_inputs += 1
            self.estimation_after_drift = None
            if self.adwin.drift_detected:
                self.estimation_after_drift = float(self.adwin.estimation)
                self.n_detections += 1
                detections += 1
                self.history = []
            else:
                self.history.append(x)
                if len(self.history) > self.max_history:
                    del self.history[0]
                    self.dropped += 1
        return detections


@pytest.mark.parametrize(("chunk", "max_history", "seed"), [(1, 50, 1), (4, 30, 2), (16, 8, 3)])
def test_batched_feeding_matches_one_input_at_a_time(chunk, max_history, seed):
    """Several detections, history caps reached between them, random batch sizes."""
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(m, 1.0, 3000) for m in (0.0, 2.0, 0.0, 3.0)])
    det, ref = AdwinDetector(chunk=chunk, max_history=max_history), OneAtATime(chunk, max_history)
    def sizes() -> Iterator[int]:  # large batches, and batches of one input
        big = random_sizes(seed, high=700)
        while True:
            yield next(big)
            yield chunk

    for part in batches(values, sizes()):
        assert det.update(part) == ref.update(part)
        snap = det.snapshot()
        assert snap["n_detections"] == ref.n_detections
        assert snap["n_inputs"] == ref.n_inputs
        assert snap["history_dropped"] == ref.dropped
        assert snap["estimation_after_drift"] == ref.estimation_after_drift
        history = np.frombuffer(base64.b64decode(snap["history_f32"]), dtype="<f4")
        assert history.tolist() == ref.history
        assert det.estimation == (ref.estimation_after_drift if ref.estimation_after_drift
                                  is not None else (ref.adwin.estimation if ref.adwin.width
                                                    else None))
    assert ref.n_detections >= 3 and ref.dropped > 0
