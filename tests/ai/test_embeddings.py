"""The offline model: the real all-MiniLM-L6-v2 from site-packages, loaded once per
test session (and once more in one subprocess that checks a fresh process's start-up)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from plait.actions.ai import ClassifyAction, ClassifyInput
from plait.actions.ai_extract import ExtractAction, ExtractInput
from plait.actions.base import ActionContext, ActionFailed
from plait.ai import embeddings
from plait.ai.embeddings import ModelUnavailable


@pytest.fixture(scope="session", autouse=True)
def model() -> None:
    embeddings.load()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_vectors_are_384_wide_float32_and_unit_length() -> None:
    vectors = embeddings.embed(["The invoice is wrong.", "I cannot log in.", "ok"])
    assert vectors.shape == (3, embeddings.DIMENSION) == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_nothing_in_gives_an_empty_matrix_and_one_string_is_refused() -> None:
    assert embeddings.embed([]).shape == (0, 384)
    with pytest.raises(TypeError, match="sequence of texts"):
        embeddings.embed("one string")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text 1 is int"):
        embeddings.embed(["fine", 3])  # type: ignore[list-item]


def test_similar_meanings_are_closer_than_unrelated_ones() -> None:
    refund, charged, weather = embeddings.embed(
        [
            "Please give me my money back for the duplicate charge.",
            "I was billed twice this month and want a refund.",
            "It will be sunny and warm in Lisbon tomorrow.",
        ]
    )
    assert _cos(refund, charged) > 0.5
    assert _cos(refund, charged) > _cos(refund, weather) + 0.3


def test_the_same_text_gets_the_same_vector_alone_or_in_a_batch() -> None:
    alone = embeddings.embed(["Deployments fail with exit code 137."])[0]
    batch = embeddings.embed(["short", "Deployments fail with exit code 137.", "x " * 200])[1]
    assert np.allclose(alone, batch, atol=1e-5)


def test_threads_may_share_the_model() -> None:
    texts = [f"ticket {i}: the export to CSV fails with error {i}" for i in range(24)]
    expected = embeddings.embed(texts)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            results[k] = embeddings.embed(texts[k::4])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(4):
        assert np.allclose(results[k], expected[k::4], atol=1e-5)


async def test_aembed_runs_in_a_worker_thread_while_the_loop_keeps_going() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    vectors = await embeddings.aembed(["a text " * 40] * 8)
    task.cancel()
    assert vectors.shape == (8, 384)
    assert ticks > 1  # the loop was not blocked while the batch was embedded


def test_long_documents_are_embedded_in_chunks_so_their_end_counts() -> None:
    cooking = "Slowly simmer the onions in butter, then add the rice and stir. " * 40
    football = "The striker scored twice and the goalkeeper saved a penalty. " * 40
    document = cooking + football  # about 800 words: the model alone sees only the start
    assert len(embeddings.chunks(document)) > 2
    topic = embeddings.embed(["a football match and its goals"])[0]
    cut = embeddings.embed([document])[0]
    whole = embeddings.embed_documents([document])[0]
    assert np.isclose(np.linalg.norm(whole), 1.0, atol=1e-5)
    assert _cos(whole, topic) > _cos(cut, topic) + 0.1


def test_chunks_split_on_words_and_keep_short_texts_whole() -> None:
    assert embeddings.chunks("one two three", words=5) == ["one two three"]
    assert embeddings.chunks("a b c d e f g", words=3) == ["a b c", "d e f", "g"]


def test_repeated_texts_come_from_the_cache() -> None:
    labels = ["This text is about cache test label alpha.", "about beta, uniquely"]
    first = embeddings.embed_cached(labels)
    before = embeddings.cache_stats()
    again = embeddings.embed_cached([labels[1], labels[0], labels[1]])
    after = embeddings.cache_stats()
    assert after["hits"] - before["hits"] == 3
    assert after["misses"] == before["misses"]
    assert np.array_equal(again[0], first[1])
    assert np.array_equal(again[1], first[0])


def test_model_info_says_what_was_loaded_and_from_where() -> None:
    info = embeddings.model_info()
    assert info["name"] == "all-MiniLM-L6-v2"
    assert info["dimension"] == 384
    assert info["loaded"] is True
    assert info["device"] == "cpu"
    assert Path(info["path"], "model.safetensors").is_file()
    assert "site-packages" in info["path"]
    assert info["load_seconds"] > 0


def test_a_bad_thread_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_AI_THREADS", "many")
    with pytest.raises(ModelUnavailable, match="PLAIT_AI_THREADS='many' is not a whole number"):
        embeddings.threads()
    monkeypatch.setenv("PLAIT_AI_THREADS", "0")
    with pytest.raises(ModelUnavailable, match="at least 1"):
        embeddings.threads()
    monkeypatch.setenv("PLAIT_AI_THREADS", "3")
    assert embeddings.threads() == 3


def _ctx() -> ActionContext:
    return ActionContext(
        run_id="r",
        workflow="wf",
        step="s",
        attempt=1,
        workdir=Path("."),
        env={},
        log=lambda stream, line: None,
        mask=lambda text: text,
    )


async def test_without_the_ai_extra_a_step_fails_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embeddings, "_MODEL", embeddings._Model())  # a process not yet loaded
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    embeddings._CACHE.clear()
    with pytest.raises(ModelUnavailable, match=r"pip install 'plait\[ai\]'"):
        embeddings.embed(["x"])
    action = ClassifyAction()
    inp = ClassifyInput.model_validate({"text": "my card was charged", "labels": ["a", "b"]})
    with pytest.raises(ActionFailed, match=r"install the ai extra") as failed:
        await action.execute(_ctx(), inp)
    assert failed.value.retryable is False
    # extraction by pattern needs no model: an enum the text does not name stays out
    extract = ExtractInput.model_validate(
        {
            "text": "Invoice INV-7, total $12.50",
            "schema": {
                "properties": {"invoice": {"type": "string"}, "mood": {"enum": ["calm", "angry"]}}
            },
        }
    )
    result = await ExtractAction().execute(_ctx(), extract)
    assert result.outputs["data"] == {"invoice": "INV-7"}
    assert result.outputs["model"] == "patterns"


FRESH_PROCESS = """
import io, json, os, sys, contextlib
from plait.ai import embeddings
answer = {"available": embeddings.available(), "heavy_before": sorted(
    m for m in ("torch", "sentence_transformers", "numpy", "transformers") if m in sys.modules)}
out = io.StringIO()
with contextlib.redirect_stdout(out):
    seconds = embeddings.load()
import torch
answer.update(
    stdout=out.getvalue(), threads=embeddings.model_info()["threads"],
    torch_threads=torch.get_num_threads(), hub_offline=os.environ.get("HF_HUB_OFFLINE"),
    transformers_offline=os.environ.get("TRANSFORMERS_OFFLINE"), seconds=seconds)
print(json.dumps(answer))
"""


def test_a_fresh_process_loads_offline_quietly_with_the_threads_it_was_given() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PLAIT_AI_THREADS": "1",
        "HOME": str(Path.home()),
        # a proxy that does not exist: any attempt to reach the network would fail
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["available"] is True
    assert answer["heavy_before"] == []  # available() answered without importing them
    assert answer["stdout"] == ""  # no progress bar or banner on stdout
    assert answer["threads"] == answer["torch_threads"] == 1
    assert answer["hub_offline"] == answer["transformers_offline"] == "1"
    assert answer["seconds"] > 0
    assert "Loading weights" not in done.stderr
