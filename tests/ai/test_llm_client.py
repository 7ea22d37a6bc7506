"""``plait.ai.llm`` against a real OpenAI/Anthropic-compatible server on 127.0.0.1:
both wire APIs, retries (Retry-After, backoff, giving up), errors that say what the
provider said and never the key, timeouts, usage and cost, masking in the step log,
embeddings, and the ``llm`` connection's test."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.actions.base import ActionContext, ActionFailed
from plait.actions.connection_admin import check_connection
from plait.actions.connections import Connection, ConnectionTypes
from plait.actions.llm import LlmConfig, LlmConnection
from plait.ai import llm
from plait.security.masking import Masker
from tests.ai.openai_server import OpenAiServer, hash_vector

KEY = "sk-test-4f9c2b7e1d"
USER = [{"role": "user", "content": "classify: the invoice is late"}]


@pytest.fixture
def server() -> Iterator[OpenAiServer]:
    with OpenAiServer(api_key=KEY) as running:
        yield running


def connect(server: OpenAiServer, name: str = "brain", **config: Any) -> Connection:
    values = {"base_url": server.base_url, "api_key": KEY, "model": "test-model", **config}
    return Connection(name, "llm", values, secrets=(KEY,))


class Log:
    """A step's log sink and masking, as the runtime gives them."""

    def __init__(self, *secrets: str) -> None:
        self.lines: list[tuple[str, str]] = []
        self.masker = Masker([KEY, *secrets])

    def context(self, tmp_path: Path, deadline: float | None = None) -> ActionContext:
        return ActionContext(
            run_id="run-1",
            workflow="triage",
            step="classify",
            attempt=1,
            workdir=tmp_path,
            env={},
            log=lambda stream, line: self.lines.append((stream, line)),
            mask=self.masker.mask,
            deadline=deadline,
        )

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


# -- the OpenAI-compatible API ----------------------------------------------------------------
async def test_openai_chat_sends_the_messages_and_reads_text_usage_and_cost(
    server: OpenAiServer,
) -> None:
    server.reply("late-payment", prompt_tokens=1200, completion_tokens=300)
    conn = connect(
        server, price_per_1k_prompt_tokens=0.5, price_per_1k_completion_tokens=1.5, max_tokens=50
    )
    messages = [{"role": "system", "content": "You label invoices."}, *USER]
    reply = await llm.chat(conn, messages, temperature=0.1)
    assert reply == llm.ChatReply(
        "late-payment", "test-model", llm.Usage(1200, 300, 0.6 + 0.45), "stop"
    )
    assert reply.usage.as_output() == {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "cost": 1.05,
    }
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {
        "model": "test-model",
        "messages": messages,
        "temperature": 0.1,
        "max_tokens": 50,
    }


async def test_a_step_may_name_another_model_and_ask_for_json_by_schema(
    server: OpenAiServer,
) -> None:
    server.reply('{"amount": 12.5}')
    schema = {"type": "object", "properties": {"amount": {"type": "number"}}}
    reply = await llm.chat(connect(server), USER, model="bigger", json_schema=schema)
    assert json.loads(reply.text) == {"amount": 12.5}
    body = server.requests[0].body
    assert body["model"] == "bigger"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": False},
    }


async def test_organization_and_extra_headers_are_sent(server: OpenAiServer) -> None:
    conn = connect(server, organization="org-7", headers={"X-Gateway-Team": "ops"})
    await llm.chat(conn, USER)
    headers = server.requests[0].headers
    assert headers["openai-organization"] == "org-7"
    assert headers["x-gateway-team"] == "ops"


async def test_azure_uses_the_deployment_url_the_api_key_header_and_api_version(
    server: OpenAiServer,
) -> None:
    conn = connect(server, base_url=server.url, azure=True, model="gpt4o-prod")
    await llm.chat(conn, USER)
    [request] = server.requests
    assert request.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.headers["api-key"] == KEY
    assert "authorization" not in request.headers
    assert "model" not in request.body


async def test_a_local_server_without_a_key_gets_no_authorization_header() -> None:
    with OpenAiServer() as local:
        conn = Connection("ollama", "llm", {"base_url": local.base_url, "model": "llama3"})
        assert (await llm.chat(conn, USER)).text == "ok"
        assert "authorization" not in local.requests[0].headers


# -- the Anthropic API --------------------------------------------------------------------------
async def test_anthropic_moves_the_system_prompt_and_reads_its_usage(server: OpenAiServer) -> None:
    server.reply("late-payment", prompt_tokens=40, completion_tokens=2)
    conn = connect(server, api="anthropic", model="claude-test", price_per_1k_prompt_tokens=3.0)
    messages = [{"role": "system", "content": "You label invoices."}, *USER]
    reply = await llm.chat(conn, messages)
    assert reply.text == "late-payment"
    assert reply.finish_reason == "end_turn"
    assert reply.usage == llm.Usage(40, 2, 0.12)
    [request] = server.requests
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert request.body["system"] == "You label invoices."
    assert request.body["messages"] == USER
    assert request.body["max_tokens"] == 1024  # that API requires one


async def test_anthropic_json_is_asked_for_in_words_and_cut_out_of_the_answer(
    server: OpenAiServer,
) -> None:
    server.reply('Here it is:\n```json\n{"amount": 7}\n```')
    conn = connect(server, api="anthropic", model="claude-test")
    reply = await llm.chat(conn, USER, json_schema={"type": "object"}, max_tokens=20)
    assert json.loads(reply.text) == {"amount": 7}
    body = server.requests[0].body
    assert "JSON Schema" in body["system"]
    assert '{"type":"object"}' in body["system"]
    assert body["max_tokens"] == 20
    assert "response_format" not in body


async def test_anthropic_has_no_embeddings(server: OpenAiServer) -> None:
    conn = connect(server, api="anthropic")
    with pytest.raises(llm.LlmError, match="no embeddings") as caught:
        await llm.embed(conn, ["a"])
    assert not caught.value.retryable
    assert server.requests == []


# -- retries -------------------------------------------------------------------------------------
async def test_a_429_is_retried_after_the_seconds_it_asks_for(
    server: OpenAiServer, tmp_path: Path
) -> None:
    server.fail(429, "Rate limit reached for requests", retry_after="1")
    server.reply("done")
    log = Log()
    started = time.monotonic()
    reply = await llm.chat(connect(server), USER, ctx=log.context(tmp_path))
    assert reply.text == "done"
    assert time.monotonic() - started >= 0.9  # it waited as asked (a lower bound only)
    assert len(server.chat_requests()) == 2
    retry = [line for stream, line in log.lines if stream == "system"]
    assert len(retry) == 1
    assert "429 rate limited: Rate limit reached" in retry[0]
    assert "retry 1 of 2 in 1s as asked (Retry-After)" in retry[0]


async def test_retry_after_may_be_an_http_date(server: OpenAiServer, tmp_path: Path) -> None:
    server.fail(503, retry_after=email.utils.formatdate(time.time() + 1, usegmt=True))
    server.reply("done")
    log = Log()
    assert (await llm.chat(connect(server), USER, ctx=log.context(tmp_path))).text == "done"
    assert "(Retry-After)" in log.text


async def test_5xx_dropped_connections_and_non_json_bodies_are_retried_with_backoff(
    server: OpenAiServer, tmp_path: Path
) -> None:
    server.fail(500, "upstream overloaded")
    server.garbage(b"<html>502 Bad Gateway</html>")
    server.reply("done")
    log = Log()
    reply = await llm.chat(connect(server, max_retries=3), USER, ctx=log.context(tmp_path))
    assert reply.text == "done"
    assert len(server.chat_requests()) == 3
    assert "500 server error: upstream overloaded" in log.text
    assert "not JSON: '<html>502 Bad Gateway</html>'" in log.text
    assert log.text.count("(backoff)") == 2


async def test_giving_up_is_a_retryable_failure_carrying_retry_after(server: OpenAiServer) -> None:
    for _ in range(2):
        server.fail(429, "slow down", retry_after="0")
    with pytest.raises(llm.LlmError) as caught:
        await llm.chat(connect(server, max_retries=1), USER)
    error = caught.value
    assert (error.retryable, error.retry_after, error.status) == (True, 0.0, 429)
    assert "slow down (gave up after 2 tries)" in str(error)
    failed = llm.action_failed(error)
    assert isinstance(failed, ActionFailed)
    assert (failed.retryable, failed.retry_after) == (True, 0.0)
    assert str(failed) == str(error)


async def test_a_long_retry_after_goes_to_the_engine_at_once(server: OpenAiServer) -> None:
    server.fail(429, "quota", retry_after="120")
    started = time.monotonic()
    with pytest.raises(llm.LlmError) as caught:
        await llm.chat(connect(server, max_retries=5), USER)
    assert time.monotonic() - started < 30  # did not sit out two minutes in the worker
    assert (caught.value.retryable, caught.value.retry_after) == (True, 120.0)
    assert len(server.chat_requests()) == 1


async def test_no_retry_goes_past_the_steps_deadline(server: OpenAiServer, tmp_path: Path) -> None:
    server.fail(429, "busy", retry_after="5")
    ctx = Log().context(tmp_path, deadline=time.time() + 2)
    with pytest.raises(llm.LlmError) as caught:
        await llm.chat(connect(server), USER, ctx=ctx)
    assert caught.value.retryable
    assert len(server.chat_requests()) == 1


async def test_a_400_is_final_and_says_what_the_provider_said(server: OpenAiServer) -> None:
    server.fail(400, "This model's maximum context length is 8192 tokens")
    with pytest.raises(llm.LlmError) as caught:
        await llm.chat(connect(server), USER)
    error = caught.value
    assert (error.retryable, error.retry_after, error.status) == (False, None, 400)
    assert "400 bad request: This model's maximum context length is 8192 tokens" in str(error)
    assert len(server.chat_requests()) == 1
    assert llm.action_failed(error).retryable is False


async def test_a_refused_key_is_final_and_never_shown(server: OpenAiServer) -> None:
    wrong = "sk-wrong-key-0000"
    conn = Connection("brain", "llm", {"base_url": server.base_url, "api_key": wrong, "model": "m"})
    with pytest.raises(llm.LlmError) as caught:
        await llm.chat(conn, USER)
    assert not caught.value.retryable
    assert "401 the API key was refused: Incorrect API key provided: ***" in str(caught.value)
    assert wrong not in str(caught.value)


async def test_a_slow_answer_times_out_and_is_retryable(server: OpenAiServer) -> None:
    server.reply("too late", delay=3)
    with pytest.raises(llm.LlmError) as caught:
        await llm.chat(connect(server, timeout=0.5, max_retries=0), USER)
    assert caught.value.retryable
    assert "no answer within 0.5s" in str(caught.value)


async def test_an_unreachable_server_is_retryable(tmp_path: Path) -> None:
    with OpenAiServer() as gone:
        url = gone.base_url
    conn = Connection("brain", "llm", {"base_url": url, "model": "m", "max_retries": 0})
    with pytest.raises(llm.LlmError) as caught:
        await llm.chat(conn, USER)
    assert caught.value.retryable
    assert caught.value.status is None


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "messages must be a non-empty list"),
        ("hello", "messages must be a non-empty list"),
        ([{"role": "robot", "content": "x"}], "messages[0].role must be system, user or assistant"),
        ([{"role": "user", "content": 3}], "messages[0].content must be text"),
        (["hi"], "messages[0] is not a mapping"),
    ],
)
async def test_bad_messages_are_refused_before_any_call(
    server: OpenAiServer, messages: Any, message: str
) -> None:
    with pytest.raises(llm.LlmError, match=message.replace("[", r"\[").replace("]", r"\]")):
        await llm.chat(connect(server), messages)
    assert server.requests == []


async def test_wrong_connections_say_what_is_wrong(server: OpenAiServer) -> None:
    sql = Connection("warehouse", "postgres", {"host": "db"})
    assert not llm.is_llm(sql)
    with pytest.raises(llm.LlmError, match="'warehouse' is a postgres connection, not an llm"):
        await llm.chat(sql, USER)
    broken = Connection("brain", "llm", {"base_url": "ftp://x", "timeout": -1})
    with pytest.raises(llm.LlmError, match="invalid llm connection 'brain'") as caught:
        await llm.chat(broken, USER)
    assert "base_url" in str(caught.value) or "timeout" in str(caught.value)
    no_model = Connection("brain", "llm", {"base_url": server.base_url})
    with pytest.raises(llm.LlmError, match="has no model: set it on the connection"):
        await llm.chat(no_model, USER)
    assert server.requests == []


async def test_an_answer_of_the_wrong_shape_is_a_clear_failure(server: OpenAiServer) -> None:
    from tests.ai.openai_server import Canned

    server.queue(Canned(raw=b'{"choices": []}'))
    with pytest.raises(
        llm.LlmError, match="openai chat with test-model: the answer has no choices"
    ):
        await llm.chat(connect(server), USER)


# -- the step log ---------------------------------------------------------------------------------
async def test_each_call_logs_one_masked_bounded_line(server: OpenAiServer, tmp_path: Path) -> None:
    secret = "hunter2-db-password"
    log = Log(secret)
    server.respond_with(lambda request: f"I saw {secret} and {KEY}. " + "x" * 2000)
    prompt = [{"role": "user", "content": f"the password is {secret}; key {KEY}. " + "y" * 2000}]
    conn = connect(server, price_per_1k_prompt_tokens=1.0)
    await llm.chat(conn, prompt, ctx=log.context(tmp_path))
    [(stream, line)] = log.lines
    assert stream == "stdout"
    assert "\n" not in line
    assert "llm chat connection=brain model=test-model prompt_tokens=" in line
    assert "cost=$0.00" in line
    assert "duration=" in line
    assert 'prompt="the password is ***; key ***. yyy' in line
    assert 'response="I saw *** and ***. xxx' in line
    assert secret not in line
    assert KEY not in line
    assert len(line) < 1000  # prompt and answer cut to LOG_TEXT_CHARS each


async def test_a_secret_cut_in_half_by_the_bound_is_still_masked(
    server: OpenAiServer, tmp_path: Path
) -> None:
    secret = "s3cr3t-" + "z" * 40
    log = Log(secret)
    padding = "p" * (llm.LOG_TEXT_CHARS - 10)
    await llm.chat(
        connect(server), [{"role": "user", "content": padding + secret}], ctx=log.context(tmp_path)
    )
    assert "s3cr3t" not in log.text


async def test_a_failed_call_is_logged_without_the_key(
    server: OpenAiServer, tmp_path: Path
) -> None:
    server.fail(400, f"bad request from key {KEY}")
    log = Log()
    with pytest.raises(llm.LlmError):
        await llm.chat(connect(server), USER, ctx=log.context(tmp_path))
    assert "llm chat connection=brain model=test-model failed after" in log.text
    assert KEY not in log.text
    assert all(KEY not in json.dumps(r.body) for r in server.requests)  # nor in a body


# -- embeddings ------------------------------------------------------------------------------------
async def test_embeddings_come_back_in_order_in_batches_with_their_usage(
    server: OpenAiServer, tmp_path: Path
) -> None:
    texts = [f"text number {i}" for i in range(llm.EMBED_BATCH + 3)]
    log = Log()
    conn = connect(server, embedding_model="test-embed", price_per_1k_prompt_tokens=0.1)
    vectors, usage = await llm.embed(conn, texts, ctx=log.context(tmp_path))
    assert vectors == [hash_vector(t) for t in texts]
    assert usage == llm.Usage(3 * len(texts), 0, pytest.approx(0.3 * len(texts) / 1000))
    assert [len(r.body["input"]) for r in server.requests] == [llm.EMBED_BATCH, 3]
    assert {r.body["model"] for r in server.requests} == {"test-embed"}
    assert f"llm embed connection=brain model=test-embed prompt_tokens={3 * len(texts)}" in log.text


async def test_embeddings_need_a_model_and_strings(server: OpenAiServer) -> None:
    with pytest.raises(llm.LlmError, match="has no embedding_model"):
        await llm.embed(connect(server), ["a"])
    with pytest.raises(llm.LlmError, match="texts must be a list of strings"):
        await llm.embed(connect(server, embedding_model="e"), "abc")
    assert await llm.embed(connect(server, embedding_model="e"), []) == ([], llm.Usage())


# -- usage arithmetic ---------------------------------------------------------------------
def test_usage_adds_up_and_keeps_an_unknown_cost_unknown() -> None:
    priced = llm.Usage(10, 5, 0.25)
    free = llm.Usage(1, 2)
    assert free.total_tokens == 3
    assert priced + free == llm.Usage(11, 7, 0.25)
    assert free + free == llm.Usage(2, 4, None)
    assert sum([priced, priced], llm.Usage()) == llm.Usage(20, 10, 0.5)
    assert free.as_output() == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "cost": None,
    }


# -- the connection type and its test -----------------------------------------------------
def test_the_llm_type_is_built_in_and_keeps_the_key_secret() -> None:
    types = ConnectionTypes(entry_point_group=None)
    assert types.get("llm") is LlmConnection
    assert LlmConnection.secret_fields() == ["api_key"]
    public, secret = types.split("llm", {"api_key": KEY, "model": "m"})
    assert secret == {"api_key": KEY}
    assert KEY not in json.dumps(public)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"base_url": "file:///etc"}, "base_url must be an http"),
        ({"base_url": "http://"}, "base_url must be an http"),
        ({"base_url": "https://me:pw@gw.example/v1"}, "base_url must not hold a user or password"),
        ({"api": "anthropic", "azure": True, "base_url": "https://x"}, "azure: true goes with"),
        ({"azure": True}, "azure: true needs base_url"),
        ({"api": "gemini"}, "api"),
        ({"max_retries": 50}, "max_retries"),
        ({"price_per_1k_prompt_tokens": -1}, "price_per_1k_prompt_tokens"),
        ({"modle": "typo"}, "modle"),
    ],
)
def test_bad_configs_are_refused_naming_the_field(config: dict[str, Any], message: str) -> None:
    from plait.errors import PlaitError

    with pytest.raises(PlaitError, match=message):
        ConnectionTypes(entry_point_group=None).parse("llm", config)


async def test_the_connection_test_lists_the_models(server: OpenAiServer) -> None:
    types = ConnectionTypes(entry_point_group=None)
    public = {"base_url": server.base_url, "model": "test-model"}
    result = await check_connection(types, "llm", public, {"api_key": KEY})
    assert result.ok, result.message
    assert result.message == (
        f"openai API at {server.base_url}: 2 model(s) (test-model, test-embed); "
        "the default model test-model is listed"
    )
    other = await check_connection(types, "llm", {**public, "model": "gpt-9"}, {"api_key": KEY})
    assert other.ok
    assert "the default model gpt-9 is NOT listed" in other.message
    assert server.requests[0].path == "/v1/models"


async def test_the_connection_test_fails_on_a_refused_key_without_showing_it(
    server: OpenAiServer,
) -> None:
    types = ConnectionTypes(entry_point_group=None)
    wrong = "sk-not-the-right-one"
    result = await check_connection(types, "llm", {"base_url": server.base_url}, {"api_key": wrong})
    assert not result.ok
    assert "401 the API key was refused" in result.message
    assert wrong not in result.message


async def test_without_a_model_list_the_test_sends_a_one_token_chat(server: OpenAiServer) -> None:
    server.fail(404, "no such route", path="/models")
    config = LlmConfig.model_validate(
        {"base_url": server.base_url, "api_key": KEY, "model": "test-model"}
    )
    message = await LlmConnection().test(config)
    assert message == f"openai API at {server.base_url}: a 1-token chat with test-model answered"
    chat = server.chat_requests()[0].body
    assert chat["max_tokens"] == 1
