"""One contract for every store: in memory, SQLite (a temp file) and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from plait.engine.state import (
    AttemptRecord,
    AttemptStatus,
    Event,
    RunState,
    RunStatus,
    StepState,
    StepStatus,
)
from plait.errors import ConflictError, NotFound, StoreError
from plait.store.base import LogLine, RunFilter, Sealer, Store
from plait.store.lite import LiteHooks
from plait.store.migrate import open_store
from plait.store.sql import SqlStore
from plait.testing import MemoryStore

MakeStore = Callable[..., Store]
TABLES = "events, logs, attempts, steps, runs, workflow_versions, workflows"


class XorSealer:
    """Good enough to prove nothing is stored in plain text."""

    def seal(self, plaintext: bytes) -> bytes:
        return b"x1" + bytes(b ^ 0x5A for b in plaintext)

    def unseal(self, sealed: bytes) -> bytes:
        assert sealed.startswith(b"x1")
        return bytes(b ^ 0x5A for b in sealed[2:])


@pytest.fixture(
    params=["memory", "sqlite", "sqlite-lite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    made: list[Store] = []

    def make(sealer: Sealer | None = None) -> Store:
        store: Store
        url = f"sqlite:///{tmp_path}/plait.db"
        if request.param == "memory":
            store = MemoryStore()
        elif request.param == "sqlite":  # SQLAlchemy's hooks, statements compiled here
            store = open_store(url, sealer)
        elif request.param == "sqlite-lite":  # sqlite3 and the kept statements
            store = open_store(url, sealer, lite=True)
            assert isinstance(store._hooks, LiteHooks)  # type: ignore[attr-defined]
        else:
            url = request.getfixturevalue("postgres_url")
            store = open_store(url, sealer)
            if not made:
                with store.engine.begin() as conn:  # type: ignore[attr-defined]
                    conn.exec_driver_sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    return make_store(XorSealer())


def new_run(run_id: str = "r1", created_at: float = 100.0, **kw: object) -> RunState:
    kw.setdefault("workflow", "deploy")
    return RunState(id=run_id, created_at=created_at, **kw)  # type: ignore[arg-type]


def queued(key: str, available_at: float | None = None) -> StepState:
    return StepState(key=key, node=key, status=StepStatus.QUEUED, available_at=available_at)


# -- versions -----------------------------------------------------------------------
def test_versions_are_deduplicated_by_checksum(store: Store) -> None:
    v1 = store.save_version("ops", "deploy", "a: 1", "c1", "ann")
    v2 = store.save_version("ops", "deploy", "a: 2", "c2", None)
    again = store.save_version("ops", "deploy", "a: 1", "c1", "bob")
    other = store.save_version("ops", "backup", "a: 1", "c1", None)
    assert (v1.version, v2.version, again.version, other.version) == (1, 2, 1, 1)
    assert again.id == v1.id
    assert other.id not in (v1.id, v2.id)
    got = store.get_version(v2.id)
    assert (got.namespace, got.workflow, got.source, got.checksum) == (
        "ops",
        "deploy",
        "a: 2",
        "c2",
    )
    with pytest.raises(NotFound):
        store.get_version(9999)


# -- runs ---------------------------------------------------------------------------
def full_run() -> tuple[RunState, list[StepState]]:
    run = RunState(
        id="r-full",
        workflow="deploy",
        namespace="ops",
        version_id=7,
        status=RunStatus.RUNNING,
        inputs={"v": "1.4", "pw": "***"},
        sealed_inputs={"pw": "hunter2"},
        trigger={"type": "manual", "by": "ann"},
        failed_phases=["main"],
        cancel_requested=True,
        timed_out=True,
        outputs={"url": "http://x", "n": [1, 2.5, None]},
        error="boom",
        reason="why",
        created_at=1.5,
        started_at=2.25,
        finished_at=3.0,
        deadline=99.5,
        attempt=2,
        version=3,
        parent_run_id="r-parent",
    )
    step = StepState(
        key="fan[1]",
        node="fan",
        status=StepStatus.RETRYING,
        attempt=3,
        interruptions=1,
        parent="fan",
        item={"host": "a"},
        index=1,
        items=4,
        outputs={"o": "***"},
        sealed_outputs={"o": "s3cret"},
        error="e",
        reason="backoff",
        available_at=9.5,
        started_at=4.0,
        finished_at=5.0,
    )
    return run, [step, StepState(key="a", node="a")]


def test_create_and_load_round_trip_every_field(store: Store) -> None:
    run, steps = full_run()
    store.create_run(run, steps, [Event(run.id, "run.created", None, {"k": [1]}, 1.5)])
    snap = store.load_run(run.id)
    assert snap.run == run
    assert sorted(snap.steps, key=lambda s: s.key) == sorted(steps, key=lambda s: s.key)
    assert isinstance(snap.run.status, RunStatus)
    assert isinstance(snap.steps[0].status, StepStatus)
    with pytest.raises(NotFound):
        store.load_run("nope")
    with pytest.raises(ConflictError):
        store.create_run(run, [], [])


def test_records_are_copied_in_and_out(store: Store) -> None:
    run = new_run(inputs={"a": [1]})
    store.create_run(run, [queued("a")], [])
    run.inputs["a"].append(2)
    loaded = store.load_run("r1")
    loaded.run.inputs["a"].append(3)
    assert store.load_run("r1").run.inputs == {"a": [1]}


def test_commit_writes_everything_and_checks_the_version(store: Store) -> None:
    store.create_run(new_run(), [queued("a"), StepState("b", "b")], [])
    run = store.load_run("r1").run
    run.status = RunStatus.RUNNING
    done = StepState("a", "a", StepStatus.SUCCEEDED, attempt=1, outputs={"x": 1})
    attempt = AttemptRecord("r1", "a", 1, AttemptStatus.SUCCEEDED, 1.0, 2.0, None, "w1", 5.0)
    events = [Event("r1", "step.succeeded", "a", {}, 2.0), Event("r1", "step.queued", "b", {}, 2.0)]
    store.commit(run, 0, [done, queued("b")], [attempt], events)
    snap = store.load_run("r1")
    assert snap.run.version == 1
    assert snap.run.status == RunStatus.RUNNING
    assert {s.key: s.status for s in snap.steps} == {"a": "succeeded", "b": "queued"}
    assert store.attempts("r1") == [attempt]
    assert [e.event.type for e in store.read_events(run_id="r1")] == [
        "step.succeeded",
        "step.queued",
    ]

    # A stale writer loses and changes nothing.
    run.error = "stale"
    with pytest.raises(ConflictError):
        store.commit(run, 0, [StepState("b", "b", StepStatus.FAILED)], [], [events[0]])
    snap = store.load_run("r1")
    assert snap.run.error is None
    assert snap.run.version == 1
    assert {s.key: s.status for s in snap.steps}["b"] == "queued"
    assert len(store.read_events(run_id="r1")) == 2
    with pytest.raises(NotFound):
        store.commit(new_run("ghost"), 0)


def test_commit_is_atomic_when_a_later_statement_fails(make_store: MakeStore) -> None:
    store = make_store()  # no sealer: a secret in a step makes the commit fail
    if isinstance(store, MemoryStore):
        pytest.skip("nothing is sealed in memory")
    store.create_run(new_run(), [queued("a")], [])
    run = store.load_run("r1").run
    run.status = RunStatus.RUNNING
    secret = StepState("a", "a", StepStatus.SUCCEEDED, sealed_outputs={"t": "x"})
    with pytest.raises(StoreError):
        store.commit(run, 0, [secret], [], [Event("r1", "x")])
    snap = store.load_run("r1")
    assert snap.run.version == 0
    assert snap.run.status == RunStatus.QUEUED
    assert store.read_events(run_id="r1") == []


def test_sealed_fields_are_encrypted_at_rest(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store(XorSealer())
    if not isinstance(store, SqlStore):
        pytest.skip("nothing is at rest in memory")
    run, steps = full_run()
    store.create_run(run, steps, [])
    snap = store.load_run(run.id)
    assert snap.run.sealed_inputs == {"pw": "hunter2"}
    assert snap.steps[1].sealed_outputs == {"o": "s3cret"}
    with store.engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT sealed_inputs FROM runs")).scalar_one()
    assert bytes(raw).startswith(b"x1")
    assert b"hunter2" not in bytes(raw)
    if store.dialect == "sqlite":
        store.close()
        data = b"".join(p.read_bytes() for p in tmp_path.glob("plait.db*"))
        assert b"hunter2" not in data
        assert b"s3cret" not in data
        assert b"deploy" in data  # the check can see plain text at all


def test_secrets_without_a_sealer_are_refused(make_store: MakeStore) -> None:
    store = make_store()
    if not isinstance(store, SqlStore):
        pytest.skip("nothing is at rest in memory")
    with pytest.raises(StoreError, match="sealer"):
        store.create_run(new_run(sealed_inputs={"pw": "x"}), [], [])
    store.create_run(new_run("r2", sealed_inputs={}), [], [])
    assert store.load_run("r2").run.sealed_inputs == {}


def test_request_cancel(store: Store) -> None:
    store.create_run(new_run(), [], [])
    store.create_run(new_run("done", status=RunStatus.SUCCEEDED), [], [])
    assert store.request_cancel("r1") is True
    run = store.load_run("r1").run
    assert run.cancel_requested
    assert run.version == 1
    assert store.request_cancel("done") is False
    with pytest.raises(NotFound):
        store.request_cancel("nope")


def test_list_runs_filters_and_pages(store: Store) -> None:
    statuses = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILED]
    for i in range(300):
        run = new_run(
            f"r{i:03}",
            created_at=float(i // 3),
            workflow=f"w{i % 2}",
            namespace="a" if i % 5 else "b",
            status=statuses[i % 3],
        )
        store.create_run(run, [], [])
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_runs(RunFilter(), cursor, 37)
        seen += [r.id for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = sorted((f"r{i:03}" for i in range(300)), key=lambda r: (int(r[1:]) // 3, r))
    assert seen == expected[::-1]
    filt = RunFilter(workflow="w1", namespace="a", status=["failed", "queued"])
    got = []
    cursor = None
    while True:
        page = store.list_runs(filt, cursor, 10)
        got += page.items
        if (cursor := page.next_cursor) is None:
            break
    want = [
        i
        for i in range(300)
        if i % 2 == 1 and i % 5 and statuses[i % 3] in (RunStatus.FAILED, RunStatus.QUEUED)
    ]
    assert sorted(r.id for r in got) == sorted(f"r{i:03}" for i in want)
    assert store.list_runs(RunFilter(workflow="none"), None, 10).items == []
    with pytest.raises(StoreError):
        store.list_runs(RunFilter(), "garbage!", 10)


# -- the queue ----------------------------------------------------------------------
def test_claim_respects_due_time_run_and_order(store: Store) -> None:
    store.create_run(new_run("r1"), [queued("a"), queued("later", 50.0), StepState("p", "p")], [])
    store.create_run(new_run("r2"), [queued("b", 5.0)], [])
    assert [(c.run_id, c.step) for c in store.claim("w", 10.0, 40.0, 10, run_id="r2")] == [
        ("r2", "b")
    ]
    claims = store.claim("w", 10.0, 40.0, 10)
    assert [(c.run_id, c.step, c.attempt, c.kind) for c in claims] == [("r1", "a", 1, "execute")]
    assert store.claim("w", 10.0, 40.0, 10) == []
    step = {s.key: s for s in store.load_run("r1").steps}["a"]
    assert (step.status, step.attempt) == (StepStatus.RUNNING, 1)
    [att] = [a for a in store.attempts("r1") if a.step == "a"]
    assert (att.status, att.worker, att.lease_until, att.started_at) == ("running", "w", 40.0, 10.0)
    assert [c.step for c in store.claim("w", 60.0, 90.0, 10)] == ["later"]


def test_claim_increments_the_attempt_of_a_retry(store: Store) -> None:
    retry = StepState("a", "a", StepStatus.RETRYING, attempt=2, available_at=20.0)
    store.create_run(new_run(), [retry], [])
    assert store.claim("w", 19.0, 50.0, 5) == []
    [c] = store.claim("w", 20.0, 50.0, 5)
    assert (c.attempt, c.kind) == (3, "execute")
    assert [a.attempt for a in store.attempts("r1")] == [3]


def test_waiting_steps_due_are_resumed_once(store: Store) -> None:
    sleeping = StepState("s", "s", StepStatus.WAITING, attempt=1, available_at=30.0)
    approval = StepState("ok", "ok", StepStatus.WAITING, attempt=1)
    store.create_run(new_run(), [sleeping, approval], [])
    assert store.next_due() == 30.0
    assert store.next_due("r1") == 30.0
    assert store.next_due("x") is None
    assert store.claim("w", 29.0, 60.0, 5) == []
    [c] = store.claim("w", 30.0, 60.0, 5)
    assert (c.step, c.attempt, c.kind) == ("s", 1, "resume")
    assert store.claim("w", 31.0, 60.0, 5) == []  # held until the lease ends
    assert [c.step for c in store.claim("w", 61.0, 90.0, 5)] == ["s"]  # claimer died
    assert store.attempts("r1") == []


def test_leases_renew_and_expire(store: Store) -> None:
    store.create_run(new_run(), [queued("a"), queued("b")], [])
    store.claim("w1", 1.0, 10.0, 1)
    store.claim("w2", 1.0, 10.0, 1)
    assert store.renew_leases("w1", 20.0) == 1
    assert store.renew_leases("nobody", 20.0) == 0
    expired = store.expired_attempts(15.0)
    assert [(a.worker, a.lease_until) for a in expired] == [("w2", 10.0)]
    assert store.expired_attempts(15.0, run_id="other") == []
    assert {a.worker for a in store.expired_attempts(25.0, run_id="r1")} == {"w1", "w2"}


@pytest.mark.parametrize("kind", ["execute", "resume"])
def test_claim_never_gives_a_step_twice(make_store: MakeStore, kind: str) -> None:
    stores = [make_store() for _ in range(4)]  # separate connections, as processes have
    steps = [
        StepState(f"s{i}", "s", StepStatus.WAITING, available_at=1.0)
        if kind == "resume"
        else queued(f"s{i}")
        for i in range(60)
    ]
    stores[0].create_run(new_run(), steps, [])
    taken: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(store: Store, name: str) -> None:
        try:
            while claims := store.claim(name, 5.0, 100.0, 3):
                with lock:
                    taken.extend(c.step for c in claims)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(stores[i % 4], f"w{i}")) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(taken) == sorted(s.key for s in steps)


# -- logs and events ----------------------------------------------------------------
def test_logs_page_by_id(store: Store) -> None:
    store.create_run(new_run("r1"), [], [])
    store.create_run(new_run("r2"), [], [])
    lines = [
        LogLine("r1" if i % 3 else "r2", f"s{i % 2}", 1, "stdout", f"l{i}", float(i))
        for i in range(50)
    ]
    store.append_logs(lines[:20])
    store.append_logs(lines[20:])
    got = store.read_logs("r1", limit=10)
    assert [g.line for g in got] == [x.line for x in lines if x.run_id == "r1"][:10]
    rest = store.read_logs("r1", after_id=got[-1].id)
    assert [g.line for g in got + rest] == [x.line for x in lines if x.run_id == "r1"]
    assert all(a.id < b.id for a, b in zip(got + rest, (got + rest)[1:], strict=False))
    s0 = store.read_logs("r1", step="s0")
    assert {g.step for g in s0} == {"s0"}
    assert len(s0) == len([x for x in lines if x.run_id == "r1" and x.step == "s0"])


def test_events_page_by_id(store: Store) -> None:
    store.create_run(new_run("r1"), [], [Event("r1", "run.created", None, {}, 1.0)])
    store.create_run(new_run("r2"), [], [Event("r2", "run.created", None, {}, 2.0)])
    for i in range(3):
        run = store.load_run("r1").run
        store.commit(run, i, events=[Event("r1", f"e{i}", "a", {"i": i}, 3.0 + i)])
    all_events = store.read_events()
    assert [e.event.type for e in all_events] == ["run.created"] * 2 + ["e0", "e1", "e2"]
    page = store.read_events(after_id=all_events[1].id, limit=2)
    assert [e.event.type for e in page] == ["e0", "e1"]
    assert page[0].event == Event("r1", "e0", "a", {"i": 0}, 3.0)
    assert [e.event.type for e in store.read_events(run_id="r2")] == ["run.created"]


# -- routing: queues, worker tags, priorities ---------------------------------------------
def routed(
    key: str,
    queue: str = "default",
    runs_on: dict[str, str] | None = None,
    priority: int = 0,
    status: StepStatus = StepStatus.QUEUED,
    available_at: float | None = None,
) -> StepState:
    return StepState(
        key=key,
        node=key,
        status=status,
        available_at=available_at,
        queue=queue,
        runs_on=runs_on or {},
        priority=priority,
    )


def test_routing_is_stored_and_kept_by_commits(store: Store) -> None:
    store.create_run(new_run(), [routed("a", "builds", {"gpu": "true"}, 7)], [])
    run = store.load_run("r1").run
    step = routed("a", "builds", {"gpu": "true"}, 7, status=StepStatus.RUNNING)
    store.commit(run, 0, [step])
    [got] = store.load_run("r1").steps
    assert (got.status, got.queue, got.runs_on, got.priority) == (
        StepStatus.RUNNING,
        "builds",
        {"gpu": "true"},
        7,
    )


def test_a_worker_claims_only_its_queues_and_tags(store: Store) -> None:
    steps = [
        routed("plain"),
        routed("build", "builds"),
        routed("gpu", runs_on={"gpu": "true"}),
        routed("gpu-eu", runs_on={"gpu": "true", "region": "eu"}),
        routed("cpu", runs_on={"gpu": "false"}),
    ]
    store.create_run(new_run(), steps, [])

    def take(queues: list[str], tags: dict[str, str]) -> set[str]:
        return {c.step for c in store.claim("w", 5.0, 50.0, 10, queues=queues, tags=tags)}

    assert take(["other"], {"gpu": "true"}) == set()
    assert take(["default"], {"region": "eu"}) == {"plain"}
    assert take(["default"], {"gpu": "true", "os": "linux"}) == {"gpu"}
    assert take(["default", "builds"], {"gpu": "true", "region": "eu"}) == {"build", "gpu-eu"}
    assert take(["default"], {"gpu": "yes"}) == set()  # a value must match, not only a name
    assert take(["default"], {"gpu": "false"}) == {"cpu"}
    attempts = store.attempts("r1")
    assert {a.step for a in attempts} == {s.key for s in steps}
    assert {a.worker for a in attempts} == {"w"}


def test_claims_take_higher_priority_first_then_due_order(store: Store) -> None:
    store.create_run(
        new_run(),
        [
            routed("low", priority=-1),
            routed("mid-late", priority=5, available_at=3.0),
            routed("mid-early", priority=5, available_at=1.0),
            routed("high", "urgent", priority=10),
            routed("retry", priority=7, status=StepStatus.RETRYING, available_at=2.0),
            routed("not-yet", priority=99, status=StepStatus.RETRYING, available_at=60.0),
            routed("timer", priority=6, status=StepStatus.WAITING, available_at=4.0),
        ],
        [],
    )
    got = store.claim("w", 10.0, 50.0, 3, queues=["default", "urgent"], tags={})
    assert [(c.step, c.kind) for c in got] == [
        ("high", "execute"),
        ("retry", "execute"),
        ("timer", "resume"),
    ]
    got = store.claim("w", 10.0, 50.0, 10, queues=["default", "urgent"], tags={})
    assert [c.step for c in got] == ["mid-early", "mid-late", "low"]


def test_a_run_driving_itself_ignores_routing_but_keeps_priority(store: Store) -> None:
    store.create_run(new_run(), [routed("a", "gpu", {"gpu": "true"}), routed("b", priority=3)], [])
    assert [c.step for c in store.claim("w", 5.0, 50.0, 10, run_id="r1")] == ["b", "a"]


def test_unrouted_claims_take_every_queue(store: Store) -> None:
    store.create_run(new_run(), [routed("a", "builds", {"gpu": "true"}), routed("b")], [])
    assert {c.step for c in store.claim("w", 5.0, 50.0, 10)} == {"a", "b"}


def test_routed_claims_never_give_a_step_twice(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(4)]
    steps = [routed(f"s{i}", ("default", "builds")[i % 2], priority=i % 3) for i in range(60)]
    stores[0].create_run(new_run(), steps, [])
    taken: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(store: Store, name: str, queues: list[str]) -> None:
        try:
            while claims := store.claim(name, 5.0, 100.0, 3, queues=queues, tags={}):
                with lock:
                    taken.extend(c.step for c in claims)
        except BaseException as exc:
            errors.append(exc)

    # every store (a separate one each, for the memory store) has a worker of each queue
    queue_sets = [["default"], ["builds"], ["default", "builds"]]
    threads = [
        threading.Thread(target=worker, args=(stores[i % 4], f"w{i}", queue_sets[i % 3]))
        for i in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(taken) == sorted(s.key for s in steps)


def test_a_commit_that_names_a_row_twice_keeps_the_last(store: Store) -> None:
    """PostgreSQL writes a transition as one statement, which cannot upsert a row twice:
    the store keeps the last of each step and attempt, as separate writes would."""
    store.create_run(new_run(), [queued("a")], [])
    run = store.load_run("r1").run
    first = StepState("a", "a", StepStatus.RUNNING, attempt=1)
    last = StepState("a", "a", StepStatus.SUCCEEDED, attempt=1, outputs={"n": 2})
    running = AttemptRecord("r1", "a", 1, AttemptStatus.RUNNING, 1.0, None, None, "w1", 9.0)
    done = AttemptRecord("r1", "a", 1, AttemptStatus.SUCCEEDED, 1.0, 2.0, None, "w1", None)
    events = [Event("r1", f"e{i}", "a", {"i": i}, 2.0) for i in range(5)]
    store.commit(run, 0, [first, last], [running, done], events)
    snap = store.load_run("r1")
    assert [(s.status, s.outputs) for s in snap.steps] == [("succeeded", {"n": 2})]
    assert store.attempts("r1") == [done]
    assert [e.event.type for e in store.read_events(run_id="r1")] == [e.type for e in events]
