"""Failure clustering with the real offline model (all-MiniLM-L6-v2 from the ``ai``
extra, loaded once for the module): errors that say the same in other words — which
share too few words for the token method — end up in one cluster, and different
causes stay apart; when the model fails, the token clusters still come back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.ops.insights import HistoryFilter, Insights, offline_embedder
from plait.ops.insights_clusters import Embedder
from plait.store.migrate import open_store
from plait.store.server import ServerStore
from plait.store.sql import SqlStore

from .test_insights_seed import T0, History, fail

HOUR = 3600.0


@pytest.fixture(scope="module")
def model() -> Embedder:
    """The offline model's embed function, loaded once for the module."""
    embed = offline_embedder()
    assert embed is not None, "the ai extra is installed in the test environment"
    embed(["warm-up"])
    return embed


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'plait.db'}")
    try:
        yield opened
    finally:
        opened.close()


def seed_paraphrases(history: History) -> None:
    """A host that cannot be resolved, said two ways (4 + 3), and two other causes."""
    at = T0
    for i in range(4):
        history.run(
            "deploy", {"pull": [fail(f"Could not resolve host: registry-{i}.example.com")]}, at=at
        )
        at += HOUR
    for i in range(3):
        error = f"Name or service not known: registry-{i}.example.com"
        history.run("sync", {"fetch": [fail(error)]}, at=at)
        at += HOUR
    for i in range(5):
        error = f"OSError: [Errno 28] No space left on device: '/data/cache/{i}.bin'"
        history.run("backup", {"dump": [fail(error)]}, at=at)
        at += HOUR
    for i in range(2):
        history.run(
            "etl", {"load": [fail(f"java.lang.OutOfMemoryError: Java heap space ({i})")]}, at=at
        )
        at += HOUR


def test_the_model_merges_errors_that_say_the_same_in_other_words(
    model: Embedder, store: SqlStore
) -> None:
    seed_paraphrases(History(store))
    source = ServerStore(store)
    by_words = Insights(source, method="tokens").failures(T0 - 1, HistoryFilter())
    by_meaning = Insights(source, embedder=model).failures(T0 - 1, HistoryFilter())
    assert by_words.method == "tokens"
    assert sorted(c.count for c in by_words.clusters) == [2, 3, 4, 5]
    assert by_meaning.method == "embeddings"
    assert [c.count for c in by_meaning.clusters] == [7, 5, 2]
    resolve = by_meaning.clusters[0]
    assert resolve.workflows == ("deploy", "sync")
    assert resolve.label.startswith("Could not resolve host")  # the larger text leads
    assert [(s.workflow, s.step, s.count) for s in resolve.steps] == [
        ("deploy", "pull", 4),
        ("sync", "fetch", 3),
    ]


def test_the_auto_method_finds_the_installed_model(model: Embedder, store: SqlStore) -> None:
    seed_paraphrases(History(store))
    insights = Insights(ServerStore(store))  # method auto: plait.ai.embeddings
    first = insights.failures(T0 - 1, HistoryFilter())
    again = insights.failures(T0 - 1, HistoryFilter())  # from the cache of embeddings
    assert first.method == again.method == "embeddings"
    assert first == again


def test_a_failing_model_leaves_the_token_clusters(store: SqlStore) -> None:
    seed_paraphrases(History(store))

    def broken(texts: Any) -> Any:
        raise RuntimeError("the model's files are damaged")

    report = Insights(ServerStore(store), embedder=broken).failures(T0 - 1, HistoryFilter())
    assert report.method == "tokens"
    assert sorted(c.count for c in report.clusters) == [2, 3, 4, 5]
