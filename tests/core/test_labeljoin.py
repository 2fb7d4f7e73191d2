"""The label join (``stream/core/labeljoin.py``): join semantics in event time, grace and
TTL, duplicates, bounds, counters, independence from batching, and the chunked snapshot
(an exact restore from the header and the chunks written by ``take_dirty``)."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

from stream.core.labeljoin import COUNTERS, Joined, LabelJoin
from stream.errors import SnapshotError

Op = tuple[Any, ...]


def p(eid: str, ts: float, version: str | None = "v1", y_pred: Any = 1, score: float | None = 0.5) -> Op:
    return ("p", eid, ts, version, y_pred, score)


def lab(eid: str, ts: float, label: Any = 1) -> Op:
    return ("l", eid, ts, label)


def adv(now: float) -> Op:
    return ("a", now)


def apply(j: LabelJoin, op: Op) -> Joined | None:
    if op[0] == "p":
        _, eid, ts, version, y_pred, score = op
        return j.add_predictions([eid], [ts], [version], [y_pred], [score], [None])
    if op[0] == "l":
        _, eid, ts, label = op
        return j.add_labels([eid], [label], [ts])
    j.advance(op[1])
    return None


def run(ops: list[Op], **params: Any) -> tuple[list[str], LabelJoin, list[Joined]]:
    j = LabelJoin(**params)
    outs = [out for op in ops if (out := apply(j, op)) is not None]
    return [e for out in outs for e in out.event_id], j, outs


def counts(**nonzero: int) -> dict[str, int]:
    return {k: nonzero.get(k, 0) for k in COUNTERS}


def conserved(j: LabelJoin) -> bool:
    c = j.counters
    return (c["predictions"] == j.pending + c["joined"] + c["expired_predictions"]
            + c["evicted_predictions"] + c["duplicate_predictions"]
            and c["labels"] == j.early_labels + c["joined"] + c["labels_without_prediction"]
            + c["evicted_labels"] + c["duplicate_labels"])


# -- join semantics, table-style ----------------------------------------------------------

SCENARIOS: list[tuple[str, dict[str, Any], list[Op], list[str], dict[str, int], tuple[int, int]]] = [
    # name, params, ops, joined ids in order, counters, (pending, early_labels) at the end
    ("label after prediction", {}, [p("a", 0), lab("a", 5)],
     ["a"], counts(predictions=1, labels=1, joined=1), (0, 0)),
    ("label without its prediction waits", {}, [p("a", 0), lab("b", 5)],
     [], counts(predictions=1, labels=1), (1, 1)),
    ("label before prediction, within grace", {"grace_seconds": 10}, [lab("a", 0), p("a", 9)],
     ["a"], counts(predictions=1, labels=1, joined=1), (0, 0)),
    ("label before prediction, grace boundary joins", {"grace_seconds": 10}, [lab("a", 0), p("a", 10)],
     ["a"], counts(predictions=1, labels=1, joined=1), (0, 0)),
    ("label before prediction, beyond grace", {"grace_seconds": 10}, [lab("a", 0), p("a", 10.5)],
     [], counts(predictions=1, labels=1, labels_without_prediction=1), (1, 0)),
    ("early label expired by another event", {"grace_seconds": 10},
     [lab("a", 0), p("z", 11), p("a", 5)],
     [], counts(predictions=2, labels=1, labels_without_prediction=1), (2, 0)),
    ("label already beyond grace on arrival", {"grace_seconds": 10}, [p("z", 100), lab("a", 50)],
     [], counts(predictions=1, labels=1, labels_without_prediction=1), (1, 0)),
    ("grace does not apply to a label whose prediction is pending", {"grace_seconds": 10},
     [p("a", 0), p("z", 50), lab("a", 30)],
     ["a"], counts(predictions=2, labels=1, joined=1), (1, 0)),
    ("out-of-order labels", {},
     [p("a", 0), p("b", 1), p("c", 2), lab("c", 10), lab("a", 3), lab("b", 7)],
     ["c", "a", "b"], counts(predictions=3, labels=3, joined=3), (0, 0)),
    ("duplicate label after join", {}, [p("a", 0), lab("a", 1), lab("a", 2)],
     ["a"], counts(predictions=1, labels=2, joined=1, duplicate_labels=1), (0, 0)),
    ("duplicate early label", {}, [lab("a", 0), lab("a", 1), p("a", 2)],
     ["a"], counts(predictions=1, labels=2, joined=1, duplicate_labels=1), (0, 0)),
    ("duplicate pending prediction", {}, [p("a", 0), p("a", 1), lab("a", 2)],
     ["a"], counts(predictions=2, labels=1, joined=1, duplicate_predictions=1), (0, 0)),
    ("duplicate prediction after join", {}, [p("a", 0), lab("a", 1), p("a", 2)],
     ["a"], counts(predictions=2, labels=1, joined=1, duplicate_predictions=1), (0, 0)),
    ("TTL boundary: label at exactly ttl joins", {"ttl_seconds": 100}, [p("a", 0), lab("a", 100)],
     ["a"], counts(predictions=1, labels=1, joined=1), (0, 0)),
    ("TTL: label past ttl finds the prediction expired", {"ttl_seconds": 100},
     [p("a", 0), lab("a", 100.5)],
     [], counts(predictions=1, labels=1, expired_predictions=1), (0, 1)),
    ("TTL expiry via advance", {"ttl_seconds": 100},
     [p("a", 0), p("b", 50), adv(100), adv(100.5), lab("b", 120)],
     ["b"], counts(predictions=2, labels=1, joined=1, expired_predictions=1), (0, 0)),
    ("advance never goes backwards", {"ttl_seconds": 100},
     [p("a", 0), adv(200), adv(10), p("b", 150), lab("b", 160)],
     ["b"], counts(predictions=2, labels=1, joined=1, expired_predictions=1), (0, 0)),
    ("prediction expired on arrival", {"ttl_seconds": 100}, [lab("z", 500), p("a", 300)],
     [], counts(predictions=1, labels=1, expired_predictions=1), (0, 1)),
    ("expiry is by ts, not arrival order", {"ttl_seconds": 100},
     [p("new", 90), p("old", 10), adv(150)],
     [], counts(predictions=2, expired_predictions=1), (1, 0)),
]


@pytest.mark.parametrize(("params", "ops", "joined", "expected", "sizes"),
                         [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_join_semantics(params, ops, joined, expected, sizes):
    got, j, _ = run(ops, **params)
    assert got == joined
    assert j.counters == expected
    assert (j.pending, j.early_labels) == sizes
    assert conserved(j)


def test_duplicate_prediction_keeps_the_first():
    _, _, outs = run([p("a", 0, "v1", "cat", 0.9), p("a", 1, "v2", "dog", 0.1), lab("a", 5, "cat")])
    (out,) = [o for o in outs if len(o)]
    assert (out.model_version, out.y_pred, out.score.tolist(), out.prediction_ts.tolist()) == (
        ["v1"], ["cat"], [0.9], [0.0])


def test_expiry_after_the_first_expired_keeps_the_later_one():
    j = LabelJoin(ttl_seconds=100)
    j.add_predictions(["late", "early"], [50.0, 0.0])
    j.advance(140.0)   # only "early" is older than 40
    assert j.add_labels(["late", "early"], [1, 1], [141.0, 141.0]).event_id == ["late"]


@pytest.mark.parametrize(
    ("pred_ts", "label_ts", "latency"),
    [(10.0, 25.5, 15.5), (10.0, 10.0, 0.0), (10.0, 8.0, -2.0), (1.7e9, 1.7e9 + 0.25, 0.25)],
)
def test_latency(pred_ts, label_ts, latency):
    j = LabelJoin()
    j.add_predictions(["a"], [pred_ts])
    out = j.add_labels(["a"], ["y"], [label_ts])
    assert out.prediction_ts.tolist() == [pred_ts]
    assert out.label_ts.tolist() == [label_ts]
    assert out.latency_seconds.tolist() == [latency]


def test_latency_of_an_early_label_join():
    j = LabelJoin(grace_seconds=100)
    j.add_labels(["a"], ["y"], [50.0])
    out = j.add_predictions(["a"], [20.0])
    assert out.latency_seconds.tolist() == [30.0]


@pytest.mark.parametrize(
    ("ops", "coverage"),
    [
        ([], None),
        ([p("a", 0), p("b", 0)], None),  # undecided
        ([p("a", 0), lab("a", 1)], 1.0),
        ([p("a", 0), p("b", 0), lab("a", 1), adv(1000)], 0.5),
        ([p("a", 0), p("b", 0), p("c", 0), adv(1000)], 0.0),
        ([p("a", 0), p("b", 1), p("c", 2), lab("c", 3)], 0.5),  # max_pending=2: "a" evicted
    ],
)
def test_coverage(ops, coverage):
    _, j, _ = run(ops, ttl_seconds=100, max_pending=2)
    assert j.coverage() == coverage


# -- bounds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "evicted"),
    [
        ([1.0, 2.0, 3.0, 4.0], "a"),   # in order: the first
        ([5.0, 1.0, 3.0, 4.0], "b"),   # the smallest ts, wherever it arrived
        ([1.0, 1.0, 1.0, 1.0], "a"),   # ties: the earliest arrival
        ([5.0, 6.0, 7.0, 0.5], "d"),   # the newcomer itself when it is the oldest
    ],
)
def test_eviction_at_max_pending(ts, evicted):
    j = LabelJoin(max_pending=3)
    j.add_predictions(["a", "b", "c", "d"], ts)
    assert (j.pending, j.counters["evicted_predictions"]) == (3, 1)
    out = j.add_labels(["a", "b", "c", "d"], [0, 0, 0, 0], [8.0] * 4)
    assert sorted(out.event_id) == sorted({"a", "b", "c", "d"} - {evicted})
    assert j.early_labels == 1
    assert conserved(j)


@pytest.mark.parametrize(
    ("ts", "evicted"),
    [([0.0, 1.0, 2.0], "x"), ([2.0, 0.0, 1.0], "y"), ([1.0, 2.0, 0.5], "z")],
)
def test_eviction_at_max_early_labels(ts, evicted):
    j = LabelJoin(max_early_labels=2)
    j.add_labels(["x", "y", "z"], ["l"] * 3, ts)
    assert (j.early_labels, j.counters["evicted_labels"]) == (2, 1)
    out = j.add_predictions(["x", "y", "z"], [2.0] * 3)
    assert sorted(out.event_id) == sorted({"x", "y", "z"} - {evicted})
    assert j.pending == 1
    assert conserved(j)


@pytest.mark.parametrize("chunk_size", [1, 2, 1000])
def test_max_joined_ids_forgets_the_oldest(chunk_size):
    j = LabelJoin(max_joined_ids=2, chunk_size=chunk_size)
    j.add_predictions(["a", "b", "c"], [0.0, 1.0, 2.0])
    j.add_labels(["a", "b", "c"], [1, 1, 1], [3.0, 3.0, 3.0])
    j.add_labels(["c", "b"], [1, 1], [4.0, 4.0])   # remembered: duplicates
    assert j.counters["duplicate_labels"] == 2
    j.add_labels(["a"], [1], [4.0])                # forgotten: waits as an early label
    assert (j.counters["duplicate_labels"], j.early_labels) == (2, 1)
    assert len(j.add_predictions(["a"], [4.0])) == 1   # and a replayed prediction joins it
    assert conserved(j)


# -- inputs and outputs ---------------------------------------------------------------------


def test_numpy_inputs_and_missing_values():
    j = LabelJoin()
    j.add_predictions(np.array(["a", "b", "c"]), np.array([1, 2, 3]), "v1",
                      y_pred=np.array([1.0, np.nan, 0.0]), score=np.array([0.9, np.nan, 0.1]),
                      value=None)
    out = j.add_labels(np.array(["c", "b", "a"]), np.array([True, False, True]), np.array([4.0, 4.0, 4.0]))
    assert out.event_id == ["c", "b", "a"]
    assert out.y_true == [True, False, True] and all(type(y) is bool for y in out.y_true)
    assert out.y_pred == [0.0, None, 1.0]
    np.testing.assert_array_equal(out.score, [0.1, np.nan, 0.9])
    assert np.isnan(out.value).all()
    assert out.model_version == ["v1"] * 3
    with pytest.raises(ValueError):
        out.latency_seconds[0] = 1.0   # read-only


def test_empty_batches():
    j = LabelJoin()
    out = j.add_predictions([], [])
    assert len(out) == 0 and out.latency_seconds.shape == (0,)
    assert len(j.add_labels([], [], [])) == 0
    assert j.watermark is None and j.counters == counts()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda j: j.add_predictions(["a", "b"], [1.0]), ValueError),
        (lambda j: j.add_predictions(["a"], [float("nan")]), ValueError),
        (lambda j: j.add_predictions(["a"], [1.0], ["v1", "v2"]), ValueError),
        (lambda j: j.add_predictions([1], [1.0]), TypeError),
        (lambda j: j.add_predictions("ab", [1.0, 2.0]), TypeError),
        (lambda j: j.add_predictions(["a"], [1.0], score=["high"]), TypeError),
        (lambda j: j.add_labels(["a"], [None], [1.0]), TypeError),
        (lambda j: j.add_labels(["a"], [float("inf")], [1.0]), ValueError),
        (lambda j: j.add_labels(["a"], [1, 2], [1.0]), ValueError),
        (lambda j: j.advance(float("inf")), ValueError),
    ],
)
def test_invalid_input_raises(call, error):
    j = LabelJoin()
    with pytest.raises(error):
        call(j)
    assert j.counters == counts()


@pytest.mark.parametrize(
    "params",
    [{"ttl_seconds": 0}, {"grace_seconds": -1}, {"max_pending": 0}, {"chunk_size": 0},
     {"max_joined_ids": 1.5}, {"ttl_seconds": float("inf")}],
)
def test_invalid_parameters_raise(params):
    with pytest.raises(ValueError):
        LabelJoin(**params)


# -- random streams: conservation and batch independence -----------------------------------


def random_ops(rng: random.Random, n: int, t0: float = 0.0) -> list[Op]:
    """Predictions with fresh ids (a few duplicates), labels mostly for recent predictions
    (some before their prediction, some for unknown ids, some twice), timestamps out of
    order by a few seconds, and the clock jumping ahead (or back: ignored) now and then."""
    ops: list[Op] = []
    t = t0
    fresh = 0
    recent: list[str] = []
    for _ in range(n):
        t += rng.expovariate(1.0)
        ts = t - rng.uniform(0, 5)
        r = rng.random()
        if r < 0.45:
            if recent and rng.random() < 0.1:
                eid = rng.choice(recent)
            else:
                eid, fresh = f"e{fresh}", fresh + 1
                recent = [*recent[-11:], eid]
            ops.append(p(eid, ts, rng.choice(["v1", "v2", None]),
                         rng.choice([0, 1, "cat", True, 2.5, None]), rng.choice([None, rng.random()])))
        elif r < 0.92:
            u = rng.random()
            eid = (rng.choice(recent) if recent and u < 0.75
                   else f"e{fresh + rng.randrange(3)}" if u < 0.9 else f"x{rng.randrange(10)}")
            ops.append(lab(eid, ts, rng.choice([0, 1, "dog", False, 0.1 * rng.random()])))
        elif r < 0.97:
            t += rng.uniform(0, 30)
            ops.append(adv(t))
        else:
            ops.append(adv(t - 50))  # backwards: ignored
    return ops


PARAMS = {"ttl_seconds": 20.0, "grace_seconds": 6.0, "max_pending": 8, "max_early_labels": 3,
          "max_joined_ids": 9, "chunk_size": 3}


def apply_batched(j: LabelJoin, ops: list[Op], rng: random.Random) -> list[Joined]:
    """Apply ``ops`` cutting runs of same-kind operations into random batches."""
    outs: list[Joined] = []
    i = 0
    while i < len(ops):
        kind = ops[i][0]
        k = i
        while k < len(ops) and ops[k][0] == kind and k - i < rng.randrange(1, 8):
            k += 1
        k = max(k, i + 1)
        run_ = ops[i:k]
        if kind == "p":
            outs.append(j.add_predictions([o[1] for o in run_], np.array([o[2] for o in run_]),
                                          [o[3] for o in run_], [o[4] for o in run_],
                                          [o[5] for o in run_]))
        elif kind == "l":
            outs.append(j.add_labels([o[1] for o in run_], [o[3] for o in run_], [o[2] for o in run_]))
        else:
            for o in run_:
                j.advance(o[1])
        i = k
    return outs


def flat(outs: list[Joined]) -> list[tuple[Any, ...]]:
    """Every joined pair as a tuple of plain values (NaN as None, for equality)."""
    rows = []
    for o in outs:
        for i in range(len(o)):
            rows.append((o.event_id[i], o.model_version[i], o.y_true[i], type(o.y_true[i]).__name__,
                         o.y_pred[i], None if np.isnan(o.score[i]) else float(o.score[i]),
                         float(o.prediction_ts[i]), float(o.label_ts[i]), float(o.latency_seconds[i])))
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_counters_are_conserved_on_random_streams(seed):
    rng = random.Random(seed)
    j = LabelJoin(**PARAMS)
    for op in random_ops(rng, 400):
        apply(j, op)
        assert conserved(j)
        assert j.pending <= PARAMS["max_pending"] and j.early_labels <= PARAMS["max_early_labels"]
    c = j.counters
    # the stream exercises every path
    assert all(c[k] > 0 for k in COUNTERS), c


@pytest.mark.parametrize("seed", range(4))
def test_results_do_not_depend_on_batching(seed):
    ops = random_ops(random.Random(seed), 400)
    one, batched = LabelJoin(**PARAMS), LabelJoin(**PARAMS)
    singles = [o for op in ops if (o := apply(one, op)) is not None]
    batches = apply_batched(batched, ops, random.Random(seed + 100))
    assert flat(singles) == flat(batches)
    assert one.counters == batched.counters
    assert one.header_snapshot()["counters"] == batched.header_snapshot()["counters"]


# -- persistence ------------------------------------------------------------------------------


def persist(j: LabelJoin, store: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """What the shell does after a batch: apply take_dirty to its table, keep the header.
    Both go through JSON (strict: no NaN) as they would through Kafka."""
    for cid, snap in j.take_dirty().items():
        if snap is None:
            del store[cid]   # only chunks the shell holds are deleted
        else:
            store[cid] = json.loads(json.dumps(snap, allow_nan=False))
    return json.loads(json.dumps(j.header_snapshot(), allow_nan=False))


@pytest.mark.parametrize("seed", range(8))
def test_restore_continues_identically(seed):
    rng = random.Random(seed)
    a = LabelJoin(**PARAMS)
    store: dict[int, dict[str, Any]] = {}
    header = persist(a, store)
    ops = random_ops(rng, 300)
    for op in ops:
        apply(a, op)
        if rng.random() < 0.3:
            header = persist(a, store)
    header = persist(a, store)
    b = LabelJoin.restore(header, list(store.values()))
    assert b.take_dirty() == {}
    assert b.header_snapshot() == a.header_snapshot()
    assert (b.counters, b.pending, b.early_labels, b.watermark) == (
        a.counters, a.pending, a.early_labels, a.watermark)

    more = random_ops(rng, 300, t0=a.watermark or 0.0)
    store_b = dict(store)
    for op in more:
        out_a, out_b = apply(a, op), apply(b, op)
        assert (out_a is None) == (out_b is None)
        if out_a is not None and out_b is not None:
            assert flat([out_a]) == flat([out_b])
        if rng.random() < 0.3:
            assert persist(a, store) == persist(b, store_b)
            assert store == store_b
    assert a.counters == b.counters
    assert a.header_snapshot() == b.header_snapshot()


def test_labels_of_every_type_round_trip():
    a = LabelJoin()
    ids = ["s", "i", "f", "b", "n"]
    labels: list[Any] = ["cat", 3, 0.1 + 0.2, True, 1e-300]
    a.add_labels(ids, labels, [1.0] * 5)
    a.add_predictions(["p"], [1.0 / 3.0], "v1", [False], [2.0 / 3.0], [1e300])
    store: dict[int, dict[str, Any]] = {}
    b = LabelJoin.restore(persist(a, store), store.values())
    out = b.add_predictions(ids, [2.0] * 5)
    assert out.y_true == labels and [type(x) for x in out.y_true] == [str, int, float, bool, float]
    out = b.add_labels(["p"], [0], [2.0])
    assert (out.y_pred, out.score.tolist(), out.value.tolist(), out.prediction_ts.tolist()) == (
        [False], [2.0 / 3.0], [1e300], [1.0 / 3.0])


def test_take_dirty_reports_emptied_chunks_as_none():
    j = LabelJoin(chunk_size=2)
    j.add_predictions(["a", "b", "c"], [0.0, 1.0, 2.0])
    first = j.take_dirty()
    assert {cid: s["event_id"] for cid, s in first.items()} == {0: ["a", "b"], 1: ["c"]}
    assert all(s["store"] == "pending" for s in first.values())
    assert j.take_dirty() == {}                       # nothing changed
    j.add_labels(["a"], [1], [3.0])
    dirty = j.take_dirty()
    assert dirty[0] is not None and dirty[0]["event_id"] == ["b"]   # rewritten without "a"
    assert 1 not in dirty                                           # untouched
    j.add_labels(["b"], [1], [3.0])
    dirty = j.take_dirty()
    assert dirty[0] is None                                         # emptied: delete
    assert j.take_dirty() == {}


def test_a_chunk_created_and_emptied_between_calls_is_not_reported():
    j = LabelJoin(chunk_size=2)
    j.add_predictions(["a"], [0.0])
    j.add_labels(["a"], [1], [1.0])
    dirty = j.take_dirty()
    assert 0 not in dirty   # the pending chunk never reached the shell
    assert [s["store"] for s in dirty.values() if s] == ["joined_ids"]


def test_forgetting_joined_ids_rewrites_no_chunk_until_one_is_empty():
    j = LabelJoin(max_joined_ids=2, chunk_size=2)
    ids = ["a", "b", "c", "d", "e"]
    j.add_predictions(ids, [0.0] * 5)
    j.add_labels(ids[:4], [1] * 4, [1.0] * 4)   # joined-id chunks: [a, b] [c, d]; a, b forgotten
    j.take_dirty()
    j.add_labels(["e"], [1], [1.0])             # forgets c: chunk [c, d] not rewritten
    dirty = j.take_dirty()
    assert 4 not in dirty                       # chunk 4 = [c, d]
    joined_chunks = {cid: s["event_id"] for cid, s in dirty.items() if s and s["store"] == "joined_ids"}
    assert list(joined_chunks.values()) == [["e"]]
    assert j.header_snapshot()["joined_ids"]["skip"] == 1


def snapshot_pair(**params: Any) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    j = LabelJoin(**params)
    j.add_predictions(["a", "b", "c"], [0.0, 1.0, 2.0])
    j.add_labels(["a", "x"], [1, 0], [3.0, 3.0])
    store: dict[int, dict[str, Any]] = {}
    return persist(j, store), store


def corrupt(what: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header, store = snapshot_pair(chunk_size=2)
    chunks = [dict(s) for s in store.values()]
    if what == "header kind":
        header["kind"] = "driftstream.monitor"
    elif what == "header version":
        header["version"] = 2
    elif what == "chunk kind":
        chunks[0]["kind"] = "driftstream.labeljoin"
    elif what == "chunk version":
        chunks[0]["version"] = 99
    elif what == "missing chunk":
        chunks.pop(0)
    elif what == "unlisted chunk":
        chunks.append({**chunks[0], "id": 99})
    elif what == "chunk twice":
        chunks.append(chunks[0])
    elif what == "stale counters":
        header["counters"]["joined"] += 1
    elif what == "missing counter":
        del header["counters"]["joined"]
    elif what == "bad parameter":
        header["params"]["chunk_size"] = 0
    elif what == "unequal columns":
        chunks[0]["ts"] = chunks[0]["ts"][:-1]
    elif what == "not a dict":
        chunks[0] = "oops"  # type: ignore[call-overload]
    return header, chunks


@pytest.mark.parametrize(
    "what",
    ["header kind", "header version", "chunk kind", "chunk version", "missing chunk",
     "unlisted chunk", "chunk twice", "stale counters", "missing counter", "bad parameter",
     "unequal columns", "not a dict"],
)
def test_restore_rejects_a_bad_snapshot(what):
    header, chunks = corrupt("nothing")
    LabelJoin.restore(header, chunks)   # the uncorrupted pair restores
    header, chunks = corrupt(what)
    with pytest.raises(SnapshotError):
        LabelJoin.restore(header, chunks)


# -- the batch fast paths against the per-event loop ------------------------------------------
#
# ``LabelJoin`` takes runs of at least ``_fast_min_run`` simple events in bulk. A join with
# ``_fast_min_run`` huge is the per-event loop (the reference semantics); ``1`` sends every
# simple run to the fast path. They must agree on everything observable: the joined pairs,
# counters, the header and every chunk (``take_dirty`` after each batch), whatever the
# batch cutting.

SLOW = 10**9

#: ``("p", eid, ts, version, y_pred, score, value)``, ``("l", eid, ts, label)`` or ``("a", now)``.
BOp = tuple[Any, ...]


class CountingJoin(LabelJoin):
    """A join counting the runs its fast paths took and declined."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fast = {True: 0, False: 0}

    def _predictions_fast(self, *args: Any) -> bool:
        took = super()._predictions_fast(*args)
        self.fast[took] += 1
        return took

    def _labels_fast(self, *args: Any) -> bool:
        took = super()._labels_fast(*args)
        self.fast[took] += 1
        return took


def batch_ops(rng: random.Random, n: int, ttl: float) -> list[BOp]:
    """Streams made for the fast paths' edge cases: long runs of predictions and of labels;
    fresh ids, duplicates within a run and across runs, labels for pending, expired, future
    (early) and unknown ids; timestamps out of order, some already expired on arrival, and
    jumps of more than the TTL within a run (expiry of entries added in the same run, open
    chunks emptied by expiry)."""
    ops: list[BOp] = []
    t, fresh = 0.0, 0
    seen: list[str] = []
    while len(ops) < n:
        kind = rng.choice("ppll a")
        size = rng.choice([1, 3, 8, 20, 40, 70])
        for _ in range(size):
            t += rng.expovariate(2.0)
            r = rng.random()
            if r < 0.003:
                t += ttl * rng.uniform(1.0, 2.5)           # a jump past the TTL
            ts = t - rng.uniform(0, 3) if r > 0.015 else t - ttl * rng.uniform(1.0, 3.0)  # or too old
            if kind == "p":
                u = rng.random()
                if u < 0.06 and seen:
                    eid = rng.choice(seen[-30:])           # a duplicate (maybe joined, maybe pending)
                elif u < 0.1 and ops and ops[-1][0] == "p":
                    eid = ops[-1][1]                       # a duplicate within the run
                else:
                    eid, fresh = f"e{fresh}", fresh + 1
                    seen.append(eid)
                ops.append(("p", eid, ts, rng.choice(["v1", "v2", None]),
                            rng.choice([0, 1, True, "cat", None, 2.5, float("nan")]),
                            rng.choice([None, rng.random(), float("nan")]),
                            rng.choice([None, None, rng.uniform(-5, 5)])))
            elif kind == "l":
                u = rng.random()
                if u < 0.7 and seen:
                    eid = rng.choice(seen[-60:])           # pending, joined or expired
                elif u < 0.8:
                    eid = f"e{fresh + rng.randrange(40)}"  # its prediction comes later (early)
                elif u < 0.9 and ops and ops[-1][0] == "l":
                    eid = ops[-1][1]                       # a duplicate within the run
                else:
                    eid = f"x{rng.randrange(1000)}"        # never predicted
                ops.append(("l", eid, ts, rng.choice([0, 1, False, "dog", 0.25])))
            else:
                ops.append(("a", t + rng.choice([0.0, 0.0, ttl / 2, -50.0])))
                break
    return ops


def cut(ops: list[BOp], rng: random.Random, max_size: int) -> list[list[BOp]]:
    """``ops`` cut into batches of one kind, of random sizes up to ``max_size``."""
    batches: list[list[BOp]] = []
    i = 0
    while i < len(ops):
        k = i + 1
        size = rng.randint(1, max_size)
        while k < len(ops) and ops[k][0] == ops[i][0] != "a" and k - i < size:
            k += 1
        batches.append(ops[i:k])
        i = k
    return batches


def feed(j: LabelJoin, batch: list[BOp], rng: random.Random) -> Joined | None:
    kind = batch[0][0]
    if kind == "a":
        j.advance(batch[0][1])
        return None
    cols = list(zip(*batch, strict=True))
    if kind == "p":
        _, ids, ts, versions, y_pred, score, value = cols
        ts_col: Any = np.array(ts) if rng.random() < 0.5 else list(ts)
        if len(set(versions)) == 1 and rng.random() < 0.5:
            return j.add_predictions(list(ids), ts_col, versions[0], list(y_pred), list(score),
                                     list(value))
        return j.add_predictions(np.array(ids) if rng.random() < 0.3 else list(ids), ts_col,
                                 list(versions), list(y_pred), list(score), list(value))
    _, ids, ts, labels = cols
    return j.add_labels(list(ids), list(labels), list(ts))


def state(j: LabelJoin, store: dict[int, dict[str, Any]]) -> tuple[Any, ...]:
    """Everything observable about a join (after persisting its dirty chunks in ``store``)."""
    dirty = j.take_dirty()
    for cid, snap in dirty.items():
        if snap is None:
            del store[cid]
        else:
            store[cid] = snap
    return (dirty, j.header_snapshot(), j.counters, j.pending, j.early_labels, j.watermark,
            j.coverage())


def plain(out: Joined | None) -> Any:
    if out is None:
        return None
    return (flat([out]), [None if np.isnan(x) else x for x in out.value.tolist()])


FAST_PARAMS = [
    PARAMS,                                                             # tight bounds
    {"ttl_seconds": 40.0, "grace_seconds": 8.0, "max_pending": 400, "max_early_labels": 60,
     "max_joined_ids": 120, "chunk_size": 5},                           # room: the fast path
    {"ttl_seconds": 30.0, "grace_seconds": 0.0, "max_pending": 100, "max_early_labels": 20,
     "max_joined_ids": 1, "chunk_size": 1},
    {"ttl_seconds": 60.0, "grace_seconds": 30.0, "max_pending": 50, "max_early_labels": 10,
     "max_joined_ids": 25, "chunk_size": 7},
]


@pytest.mark.parametrize("params", FAST_PARAMS)
@pytest.mark.parametrize("seed", range(5))
def test_fast_paths_equal_the_per_event_loop_batch_by_batch(params, seed):
    """Same batches: the same output, header and dirty chunks after every batch."""
    rng = random.Random(seed)
    ops = batch_ops(rng, 1500, params["ttl_seconds"])
    slow, fast = CountingJoin(**params), CountingJoin(**params)
    slow._fast_min_run, fast._fast_min_run = SLOW, rng.choice([1, 1, 2, 5])
    store_slow: dict[int, dict[str, Any]] = {}
    store_fast: dict[int, dict[str, Any]] = {}
    for batch in cut(ops, rng, 60):
        seed_cols = rng.random()
        out_slow = feed(slow, batch, random.Random(seed_cols))
        out_fast = feed(fast, batch, random.Random(seed_cols))
        assert plain(out_fast) == plain(out_slow)
        assert state(fast, store_fast) == state(slow, store_slow)
        assert conserved(fast)
    assert store_fast == store_slow
    assert slow.fast == {True: 0, False: 0}
    assert fast.fast[True] > 0                  # the fast path taken...
    assert fast.fast[False] > 0 or params is not PARAMS   # ...and declined (tight bounds)
    assert fast.counters["joined"] > 10


@pytest.mark.parametrize("params", FAST_PARAMS)
@pytest.mark.parametrize("seed", range(4))
def test_fast_paths_do_not_depend_on_batching(params, seed):
    """One event a call through the loop, against random cuttings through the fast paths:
    the same pairs in the same order, and the same final header and chunks."""
    rng = random.Random(100 + seed)
    ops = batch_ops(rng, 1200, params["ttl_seconds"])
    ref = LabelJoin(**params)
    ref._fast_min_run = SLOW
    ref_store: dict[int, dict[str, Any]] = {}
    ref_pairs = [plain(o) for op in ops if (o := feed(ref, [op], rng)) is not None]
    ref_state = state(ref, ref_store)[1:]
    for max_size in (8, 40, 200):
        j = LabelJoin(**params)
        j._fast_min_run = 1
        store: dict[int, dict[str, Any]] = {}
        outs = [o for b in cut(ops, rng, max_size) if (o := feed(j, b, rng)) is not None]
        pairs = [pair for o in outs for pair in plain(o)[0]]
        assert pairs == [pair for o in ref_pairs for pair in o[0]]
        state(j, store)
        assert state(j, store)[1:] == ref_state
        assert store == ref_store
        restored = LabelJoin.restore(json.loads(json.dumps(j.header_snapshot())),
                                     json.loads(json.dumps(list(store.values()))))
        assert restored.header_snapshot() == j.header_snapshot()


def test_fast_path_bulk_join_and_chunk_numbering():
    """A batch of 40 predictions and then their labels with a few early ones among them:
    the chunk ids are those the per-event loop gives, in the order the events open them."""
    ids = [f"p{i}" for i in range(40)]
    joins = []
    for fast in (False, True):
        j = LabelJoin(chunk_size=3, grace_seconds=100.0)
        j._fast_min_run = 1 if fast else SLOW
        j.add_predictions(ids, [float(i) for i in range(40)], "v1", [i % 2 for i in range(40)])
        labels = [e for i, e in enumerate(ids) if i % 3] + [f"early{i}" for i in range(12)]
        random.Random(0).shuffle(labels)
        out = j.add_labels(labels, [1] * len(labels), [50.0 + i for i in range(len(labels))])
        joins.append((out.event_id, out.y_pred, j.take_dirty(), j.header_snapshot()))
    assert joins[0] == joins[1]
    assert len(joins[1][0]) == 26 and joins[1][3]["counters"]["joined"] == 26


def test_fast_path_keeps_expiry_within_a_batch():
    """Watermark moves inside a batch expire what is due at each event: a label after the
    move that expired its prediction does not join, one before it does; the TTL and grace
    boundaries are inclusive, as in the per-event loop."""
    for fast in (False, True):
        j = CountingJoin(ttl_seconds=10.0, grace_seconds=5.0)
        j._fast_min_run = 1 if fast else SLOW
        j.add_predictions(["a", "b", "c", "d"], [0.0, 1.0, 2.0, 5.0])
        out = j.add_labels(["a", "z", "b", "c", "d", "y", "q"], [1] * 7,
                           [9.0, 11.5, 11.6, 11.7, 15.0, 10.0, 9.9])
        assert out.event_id == ["a", "c", "d"]          # "d": exactly the TTL old
        assert j.counters == counts(predictions=4, labels=7, joined=3, expired_predictions=1,
                                    labels_without_prediction=1)   # "q"; "y": exactly grace
        assert j.early_labels == 3 and j.fast[True] == (2 if fast else 0)


# -- the column validators: whole-column checks against the per-entry functions ----------------


def outcome(f: Any, *args: Any) -> Any:
    try:
        return ("ok", f(*args))
    except Exception as exc:  # the same exception, message included
        return ("error", type(exc), str(exc))


class Sub(str):
    pass


@pytest.mark.parametrize("seed", range(30))
def test_column_validators_equal_the_per_entry_functions(seed):
    from stream.core import labeljoin as lj

    rng = random.Random(seed)
    pool = [None, 0, 1, 7, True, False, 0.5, -2.0, float("nan"), float("inf"), 10**400, "a",
            Sub("s"), np.float64(0.25), np.int64(3), np.bool_(True), b"x", 1e308]
    for _ in range(20):
        col = [rng.choice(pool) for _ in range(rng.randrange(0, 6))]
        if rng.random() < 0.5:   # mostly one type: the fast cases
            col = [x for x in col if type(x) is type(col[0])] if col else col
        pairs = [
            (lambda c: lj._times(c, len(c)), lambda c: [lj._time(x) for x in c]),
            (lj._ids, lambda c: [lj._id(x) for x in c]),
            (lj._versions, lambda c: [lj._version(x) for x in c]),
            (lj._opt_labels, lambda c: [lj._opt_label(x) for x in c]),
            (lj._labels, lambda c: [lj._label(x) for x in c]),
            (lj._numbers, lambda c: [lj._number(x) for x in c]),
        ]
        for fast, slow in pairs:
            got, want = outcome(fast, list(col)), outcome(slow, list(col))
            assert got == want or (got[0] == want[0] == "ok" and repr(got) == repr(want)), (col, got, want)
            if got[0] == "ok":
                assert [type(x) for x in got[1]] == [type(x) for x in want[1]]


# -- the quality monitor on top: fast join and batched ADWIN against the reference -------------


def quality_pair(rng: random.Random, task: str, drift: bool) -> tuple[dict[str, Any], Any]:
    """A prediction (label, score, value) and its label for a task, sometimes invalid: right
    (or close) before the drift, wrong (or far) after it, so that ADWIN fires."""
    bad = rng.random() < 0.05
    if task == "binary":
        s = rng.random()
        y = (s >= 0.5) != drift
        return {"label": rng.choice([s >= 0.5, None]), "score": rng.choice([s, s, None]),
                "value": None}, "bad" if bad else rng.choice([y, int(y)])
    if task == "multiclass":
        c = rng.choice(["a", "b", "c"])
        return {"label": rng.choice([c, c, c, None]), "score": None, "value": None}, \
            "bad" if bad else ("z" if drift else c)
    v = rng.uniform(-10, 10)
    return {"label": None, "score": None, "value": rng.choice([v, v, v, None])}, \
        "bad" if bad else v + rng.gauss(0, 1) * (5.0 if drift else 0.1)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("kind", ["count", "time"])
@pytest.mark.parametrize("seed", range(3))
def test_quality_monitor_fast_paths_equal_the_reference(task, kind, seed):
    from stream.config import MonitorConfig
    from stream.core.quality_monitor import QualityMonitor

    rng = random.Random(seed)
    cfg = MonitorConfig(quality_window_kind=kind, quality_window_size=rng.choice([7, 50]),
                        quality_window_seconds=20.0, allowed_lateness_seconds=5.0,
                        quality_min_pairs=3, quality_baseline_windows=1, quality_margin=0.05,
                        adwin_chunk=rng.choice([1, 2, 3]), adwin_quiet_evaluations=1,
                        label_ttl_seconds=60.0, label_grace_seconds=10.0,
                        max_pending_predictions=300, max_early_labels=40)
    ref, qm = QualityMonitor("m", cfg), QualityMonitor("m", cfg)
    ref.join._fast_min_run, ref._batch_adwin = SLOW, False
    qm.join._fast_min_run = rng.choice([1, 4])
    t, fresh, sent = 0.0, 0, []
    detections = 0
    for step in range(80):
        n = rng.choice([1, 5, 30, 80])
        if rng.random() < 0.55:
            rows = []
            for _ in range(n):
                t += rng.expovariate(3.0)
                eid, fresh = f"e{fresh}", fresh + 1
                prediction, truth = quality_pair(rng, task, drift=step > 40)
                sent.append((eid, truth))
                rows.append((eid, t - rng.uniform(0, 2), rng.choice(["v1"] * 5 + ["v2"]), prediction))
            cols = {"event_id": [r[0] for r in rows], "ts": [r[1] for r in rows],
                    "model_version": [r[2] for r in rows],
                    "prediction": {k: [r[3][k] for r in rows] for k in ("label", "score", "value")}}
            outs = [m.add_predictions(json.loads(json.dumps(cols))) for m in (ref, qm)]
        else:
            picks = [rng.choice(sent[-120:]) if sent and rng.random() < 0.9
                     else (f"e{fresh + rng.randrange(20)}", quality_pair(rng, task, False)[1])
                     for _ in range(n)]  # some labels before their prediction
            t += rng.expovariate(1.0)
            labels = {"event_id": [e for e, _ in picks],
                      "label": [y for _, y in picks],
                      "ts": [t + rng.uniform(0, 3) for _ in picks]}
            outs = [m.add_labels(json.loads(json.dumps(labels))) for m in (ref, qm)]
        a, b = outs
        assert (b.reports, b.alerts, b.joined, b.invalid_pairs, b.late_pairs, b.adwin_detections) \
            == (a.reports, a.alerts, a.joined, a.invalid_pairs, a.late_pairs, a.adwin_detections)
        np.testing.assert_array_equal(b.latencies, a.latencies)
        detections += b.adwin_detections
        assert qm.snapshot() == ref.snapshot()
        assert qm.take_chunks() == ref.take_chunks()
    assert qm.join.counters["joined"] > 50 and detections > 0
