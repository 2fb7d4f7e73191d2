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
