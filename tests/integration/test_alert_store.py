"""The alert part of the server store on SQLite and PostgreSQL: rules and their sources,
conditional writes of alert transitions (one writer wins), the history, and the
notification outbox (one sender claims each notice)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.errors import ConflictError, NotFound
from plait.ops.alerts import Observation, Rule, evaluate, notices
from plait.security.crypto import Keyring
from plait.store.migrate import open_store
from plait.store.server import ServerStore
from tests.pg import fresh_database

T0 = 1_800_000_000.0
RULE = Rule(name="fails", kind="failure_rate", threshold=0.1, channels=("ops", "mail"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'plait.db'}"
        return
    with fresh_database("plait_alerts") as found:
        yield found


@pytest.fixture
def store(url: str) -> Iterator[ServerStore]:
    sql = open_store(url, Keyring.generate())
    try:
        yield ServerStore(sql)
    finally:
        sql.close()


def _fire(store: ServerStore, value: float = 0.5, now: float = T0) -> bool:
    before = store.alert_states(RULE.name)
    seen = [Observation("deploy", value, "deploy: bad", count=10, info={"run_id": "r1"})]
    changes = evaluate(RULE, seen, before, now)
    return all(store.apply_alert(c, notices(RULE, c, now), now) for c in changes)


# -- rules ----------------------------------------------------------------------------------
def test_rules_are_created_replaced_listed_and_deleted(store: ServerStore) -> None:
    spec = {"kind": "worker_silent", "threshold": "2m"}
    record, created = store.put_alert_rule("quiet", "worker_silent", spec, actor="ann")
    assert created
    assert record.source == "api"
    assert record.spec == spec
    again, created = store.put_alert_rule("quiet", "worker_silent", {**spec, "for": "1m"})
    assert not created
    assert again.spec["for"] == "1m"
    assert again.created_at == record.created_at
    assert [r.name for r in store.list_alert_rules()] == ["quiet"]
    store.delete_alert_rule("quiet")
    with pytest.raises(NotFound):
        store.get_alert_rule("quiet")
    with pytest.raises(NotFound):
        store.delete_alert_rule("quiet")


def test_the_file_owns_its_rules(store: ServerStore) -> None:
    spec = {"kind": "worker_silent"}
    assert store.sync_file_rules({"a": ("worker_silent", spec)}) == ["a"]
    assert store.sync_file_rules({"a": ("worker_silent", spec)}) == []  # unchanged: no write
    assert store.get_alert_rule("a").source == "file"
    with pytest.raises(ConflictError, match=r"comes from alerts\.yaml"):
        store.put_alert_rule("a", "worker_silent", spec)
    with pytest.raises(ConflictError, match=r"comes from alerts\.yaml"):
        store.delete_alert_rule("a")
    store.put_alert_rule("b", "worker_silent", spec)  # the API's
    changed = store.sync_file_rules({"b": ("worker_silent", {**spec, "for": "1m"})})
    assert changed == ["b", "a"]  # the file takes b over, and a is no longer in it
    assert [(r.name, r.source) for r in store.list_alert_rules()] == [("b", "file")]


def test_disabling_or_deleting_a_rule_closes_its_alerts_silently(store: ServerStore) -> None:
    store.put_alert_rule("fails", "failure_rate", {"kind": "failure_rate", "threshold": 0.1})
    assert _fire(store)
    sent_before = len(store.notifications())
    store.put_alert_rule(
        "fails", "failure_rate", {"kind": "failure_rate", "threshold": 0.1, "enabled": False}
    )
    assert store.alert_states("fails") == []
    [alert] = store.list_alerts(rule="fails")
    assert alert.state == "resolved"
    assert alert.resolved_at is not None
    assert len(store.notifications()) == sent_before


# -- transitions ----------------------------------------------------------------------------
def test_a_firing_transition_opens_an_alert_and_queues_a_notice_per_channel(
    store: ServerStore,
) -> None:
    assert _fire(store)
    [state] = store.alert_states("fails")
    assert state.state == "firing"
    assert state.revision == 1
    assert state.alert_id is not None
    [alert] = store.list_alerts()
    assert (alert.id, alert.state, alert.value, alert.notifications) == (
        state.alert_id,
        "firing",
        0.5,
        1,
    )
    assert alert.info == {"run_id": "r1"}
    queued = store.notifications(state.alert_id)
    assert sorted(n.channel for n in queued) == ["mail", "ops"]
    assert {n.event for n in queued} == {"firing"}
    assert {n.status for n in queued} == {"pending"}
    assert queued[0].notice["title"] == "[WARNING] fails"


def test_a_transition_computed_from_an_old_state_writes_nothing(store: ServerStore) -> None:
    assert _fire(store)
    stale = store.alert_states("fails")
    # another evaluator moves on first: a new value (revision 2)
    assert _fire(store, 0.7, T0 + 30)
    [change] = evaluate(RULE, [], stale, T0 + 60)  # resolution computed from revision 1
    assert change.event == "resolved"
    assert store.apply_alert(change, notices(RULE, change, T0 + 60), T0 + 60) is False
    assert store.alert_states("fails")[0].value == 0.7
    assert all(n.event == "firing" for n in store.notifications())
    # from the current state it applies, once
    [change] = evaluate(RULE, [], store.alert_states("fails"), T0 + 60)
    assert store.apply_alert(change, notices(RULE, change, T0 + 60), T0 + 60)
    assert store.apply_alert(change, notices(RULE, change, T0 + 60), T0 + 60) is False
    [alert] = store.list_alerts()
    assert alert.state == "resolved"
    assert alert.resolved_at == T0 + 60
    assert alert.notifications == 2
    assert sorted(n.event for n in store.notifications()) == [
        "firing",
        "firing",
        "resolved",
        "resolved",
    ]


def test_of_two_racing_first_writes_one_wins(url: str, store: ServerStore) -> None:
    other = ServerStore(open_store(url, Keyring.generate()))
    try:
        changes = evaluate(RULE, [Observation("deploy", 0.5, "x", count=10)], [], T0)
        results: list[bool] = []
        barrier = threading.Barrier(2)

        def apply(s: ServerStore) -> None:
            barrier.wait()
            results.append(s.apply_alert(changes[0], notices(RULE, changes[0], T0), T0))

        threads = [threading.Thread(target=apply, args=(s,)) for s in (store, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == [False, True]
        assert len(store.list_alerts()) == 1
        assert len(store.notifications()) == 2
    finally:
        other._sql.close()


def test_pending_alerts_are_listed_before_firing_and_resolved_ones(store: ServerStore) -> None:
    slow = Rule(name="slow", kind="run_duration", threshold=60.0, for_=600.0)
    [pending] = evaluate(slow, [Observation("build", 90.0, "build: 90s")], [], T0)
    assert store.apply_alert(pending, [], T0)
    assert _fire(store)
    listed = store.list_alerts()
    assert [(a.rule, a.state) for a in listed] == [("slow", "pending"), ("fails", "firing")]
    assert listed[0].id is None
    assert listed[0].started_at == T0
    assert [a.rule for a in store.list_alerts(state="pending")] == ["slow"]
    assert [a.rule for a in store.list_alerts(rule="fails")] == ["fails"]
    assert store.list_alerts(state="resolved") == []
    assert len(store.list_alerts(limit=1)) == 1


# -- the outbox -----------------------------------------------------------------------------
def test_each_notification_is_claimed_by_one_sender(url: str, store: ServerStore) -> None:
    assert _fire(store)
    due = store.due_notifications(T0)
    assert len(due) == 2
    other = ServerStore(open_store(url, Keyring.generate()))
    try:
        first = due[0].id
        assert store.claim_notification(first, T0, 60)
        assert other.claim_notification(first, T0 + 1, 60) is False  # held
        assert [n.id for n in other.due_notifications(T0 + 1)] == [due[1].id]
        # a sender that died: after its lease another may send it
        assert other.claim_notification(first, T0 + 61, 60)
        other.finish_notification(first, T0 + 62)
        assert store.claim_notification(first, T0 + 200, 60) is False  # sent
    finally:
        other._sql.close()
    [sent] = [n for n in store.notifications() if n.id == first]
    assert (sent.status, sent.sent_at, sent.attempts) == ("sent", T0 + 62, 1)


def test_a_failed_send_is_retried_later_or_given_up(store: ServerStore) -> None:
    assert _fire(store)
    a, b = (n.id for n in store.due_notifications(T0))
    assert store.claim_notification(a, T0, 60)
    store.finish_notification(a, T0, error="503", retry_at=T0 + 30)
    assert [n.id for n in store.due_notifications(T0 + 10)] == [b]
    assert a in [n.id for n in store.due_notifications(T0 + 30)]
    assert store.claim_notification(b, T0, 60)
    store.finish_notification(b, T0, error="channel 'mail' is not configured")
    found = {n.id: n for n in store.notifications()}
    assert (found[a].status, found[a].attempts, found[a].error) == ("pending", 1, "503")
    assert (found[b].status, found[b].error) == ("failed", "channel 'mail' is not configured")


def test_old_resolved_alerts_and_sent_notifications_are_pruned(store: ServerStore) -> None:
    assert _fire(store)
    [change] = evaluate(RULE, [], store.alert_states("fails"), T0 + 60)
    assert store.apply_alert(change, notices(RULE, change, T0 + 60), T0 + 60)
    for n in store.due_notifications(T0 + 60):
        assert store.claim_notification(n.id, T0 + 60, 60)
        store.finish_notification(n.id, T0 + 60)
    assert _fire(store, now=T0 + 120)  # a new episode, still firing, notices pending
    assert store.prune_alerts(T0, T0) == (0, 0)  # nothing older than that
    assert store.prune_alerts(T0 + 61, T0 + 121) == (1, 4)
    [left] = store.list_alerts()
    assert left.state == "firing"
    assert {n.status for n in store.notifications()} == {"pending"}


def test_worker_heartbeats_come_from_the_registry(store: ServerStore) -> None:
    assert store.worker_heartbeats() == []  # no worker registered, no attempt running
    for name in ("w1", "w2"):
        store.register_worker(
            name, host="h", pid=1, queues=["default"], tags={}, concurrency=4, version="1", now=T0
        )
    store.worker_beat("w1", T0 + 10, 0, "running")
    store.worker_beat("w2", T0 + 20, 0, "stopped")  # stopped: no longer watched
    [beat] = store.worker_heartbeats()
    assert (beat.worker, beat.at, beat.source) == ("w1", T0 + 10, "registry")
