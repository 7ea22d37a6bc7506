"""Drafting a workflow from a sentence: ``plait.ai.draft`` against a real
OpenAI-compatible server, and ``plait draft`` as a real subprocess (valid, repaired,
still invalid, bad input, a failing provider)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plait.actions.connections import Connection
from plait.actions.registry import ActionRegistry
from plait.ai import draft as drafting
from plait.ai.llm import LlmError, Usage
from tests.ai.openai_server import OpenAiServer

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-draft-1a2b3c4d5e"
PROMPT = "every night back up the database and tell #ops if it fails"

VALID = """\
name: nightly-backup
description: Back up the database every night and tell ops when it fails
triggers:
  - schedule: {cron: "0 2 * * *"}
steps:
  - id: backup
    run: ./scripts/backup.sh
on_failure:
  - id: tell-ops
    uses: notify
    with: {channel: ops, message: "The nightly backup failed"}
"""

INVALID = """\
name: Nightly Backup
steps:
  - id: backup
    run: ./scripts/backup.sh
"""
INVALID_ERROR = "draft.yaml:1:7: name: 'Nightly Backup' is not allowed"


@pytest.fixture
def provider() -> Iterator[OpenAiServer]:
    with OpenAiServer(api_key=KEY) as running:
        yield running


@pytest.fixture(scope="module")
def registry() -> ActionRegistry:
    return ActionRegistry()


def connect(provider: OpenAiServer) -> Connection:
    config = {
        "base_url": provider.base_url,
        "api_key": KEY,
        "model": "test-model",
        "price_per_1k_prompt_tokens": 1.0,
        "price_per_1k_completion_tokens": 2.0,
    }
    return Connection("brain", "llm", config, secrets=(KEY,))


# -- the library ------------------------------------------------------------------------------
async def test_a_valid_answer_is_one_call_and_carries_schema_actions_and_examples(
    provider: OpenAiServer, registry: ActionRegistry
) -> None:
    provider.reply(VALID, prompt_tokens=7000, completion_tokens=90)
    made = await drafting.draft_workflow(connect(provider), f"  {PROMPT}\n", actions=registry)
    assert made.valid
    assert made.errors == ()
    assert made.source == VALID
    assert made.model == "test-model"
    assert made.usage == Usage(7000, 90, pytest.approx(7.0 + 0.18))
    [request] = provider.chat_requests()
    system, user = request.body["messages"]
    assert user == {"role": "user", "content": PROMPT}
    assert system["role"] == "system"
    prompt = system["content"]
    assert '"on_failure"' in prompt  # the workflow JSON Schema
    assert '"title"' not in prompt  # … without its titles
    assert "- notify: " in prompt  # the actions, one line each …
    assert "    message! (string): The text to send" in prompt  # fields; ! = required
    assert "# examples/rollback.yaml" in prompt
    assert "name: hello" in prompt


async def test_an_invalid_answer_is_sent_back_once_with_its_errors(
    provider: OpenAiServer, registry: ActionRegistry
) -> None:
    provider.reply(INVALID, prompt_tokens=100, completion_tokens=10)
    provider.reply(f"Sorry, fixed:\n```yaml\n{VALID}```\n", prompt_tokens=200, completion_tokens=20)
    made = await drafting.draft_workflow(connect(provider), PROMPT, actions=registry)
    assert made.valid, made.errors
    assert made.source == VALID  # the fence and the prose around it are gone
    assert made.usage == Usage(300, 30, pytest.approx(0.3 + 0.06))
    first, second = provider.chat_requests()
    messages = second.body["messages"]
    assert messages[:2] == first.body["messages"]
    assert messages[2] == {"role": "assistant", "content": INVALID}
    assert messages[3]["role"] == "user"
    assert "1:7: name: 'Nightly Backup' is not allowed" in messages[3]["content"]


async def test_a_draft_still_invalid_after_the_repair_comes_back_with_its_errors(
    provider: OpenAiServer, registry: ActionRegistry
) -> None:
    provider.reply(INVALID)
    provider.reply(INVALID)
    made = await drafting.draft_workflow(connect(provider), PROMPT, actions=registry)
    assert not made.valid
    assert made.source == INVALID
    [error] = made.errors
    assert (error.line, error.column) == (1, 7)
    assert str(error).startswith(INVALID_ERROR)
    assert made.as_output()["errors"] == [
        {"line": 1, "column": 7, "message": error.message},
    ]
    assert len(provider.chat_requests()) == 2


async def test_an_empty_or_broken_answer_is_an_error_not_a_crash(
    provider: OpenAiServer, registry: ActionRegistry
) -> None:
    provider.reply("")
    provider.reply("steps: [")
    made = await drafting.draft_workflow(connect(provider), PROMPT, actions=registry)
    assert not made.valid
    assert made.errors[0].message.startswith("invalid YAML")


@pytest.mark.parametrize("prompt", ["", "   \n", "x" * (drafting.MAX_PROMPT_CHARS + 1)])
async def test_a_bad_prompt_never_reaches_the_provider(
    provider: OpenAiServer, registry: ActionRegistry, prompt: str
) -> None:
    with pytest.raises(drafting.DraftInputError):
        await drafting.draft_workflow(connect(provider), prompt, actions=registry)
    assert provider.requests == []


async def test_a_failing_provider_raises_the_clients_error(
    provider: OpenAiServer, registry: ActionRegistry
) -> None:
    provider.fail(400, "model 'test-model' does not exist")
    with pytest.raises(LlmError, match="model 'test-model' does not exist"):
        await drafting.draft_workflow(connect(provider), PROMPT, actions=registry)


def test_the_examples_in_the_prompt_are_the_files_in_examples() -> None:
    for name, text in drafting.EXAMPLES:
        assert (ROOT / name).read_text() == text
        assert drafting.validate_source(text, ActionRegistry()) == []


@pytest.mark.parametrize(
    ("answer", "source"),
    [
        ("name: a\n", "name: a\n"),
        ("```yaml\nname: a\n```", "name: a\n"),
        ("Here you go:\n\n```YML\nname: a\nsteps: []\n```\nEnjoy.", "name: a\nsteps: []\n"),
        ("```\nname: a\n", "name: a\n"),  # an unclosed fence (the answer was cut)
        ("  \n", ""),
    ],
)
def test_the_yaml_is_taken_out_of_the_answer(answer: str, source: str) -> None:
    assert drafting.yaml_of(answer) == source


# -- plait draft, the real command ------------------------------------------------------------
@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home for the module's commands: its store is created (migrated) once."""
    return tmp_path_factory.mktemp("home")


Cli = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def cli(home: Path, tmp_path: Path, provider: OpenAiServer) -> Cli:
    """``plait draft ARGS…`` as a subprocess, with PLAIT_CONNECTION_LLM pointing at the
    provider (or ``connection=`` in its place)."""

    def run(*args: str, connection: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        env["PLAIT_HOME"] = str(home)
        env["COLUMNS"] = "200"
        env["PLAIT_CONNECTION_LLM"] = connection or json.dumps(
            {"type": "llm", "base_url": provider.base_url, "api_key": KEY, "model": "test-model"}
        )
        return subprocess.run(
            [sys.executable, "-m", "plait.cli", "draft", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def test_cli_a_valid_draft_goes_to_stdout_and_exits_0(provider: OpenAiServer, cli: Cli) -> None:
    provider.reply(VALID, prompt_tokens=700, completion_tokens=90)
    done = cli(PROMPT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == VALID
    assert "draft by test-model: valid; 700 prompt + 90 completion tokens" in done.stderr
    assert provider.chat_requests()[0].body["messages"][1]["content"] == PROMPT


def test_cli_a_repaired_draft_is_written_with_o_and_exits_0(
    tmp_path: Path, provider: OpenAiServer, cli: Cli
) -> None:
    provider.reply(INVALID)
    provider.reply(VALID)
    done = cli(PROMPT, "-o", "backup.yaml", "--model", "bigger")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert (tmp_path / "backup.yaml").read_text() == VALID
    assert "written to backup.yaml" in done.stderr
    assert [r.body["model"] for r in provider.chat_requests()] == ["bigger", "bigger"]


def test_cli_a_draft_still_invalid_prints_its_errors_and_exits_1(
    provider: OpenAiServer, cli: Cli
) -> None:
    provider.reply(INVALID)
    provider.reply(INVALID)
    done = cli(PROMPT)
    assert done.returncode == 1, done.stderr
    assert done.stdout == INVALID  # shown, so it can be fixed by hand
    assert INVALID_ERROR in done.stderr
    assert "1 error(s) left" in done.stderr


def test_cli_json_gives_the_apis_shape(provider: OpenAiServer, cli: Cli) -> None:
    provider.reply(VALID, prompt_tokens=10, completion_tokens=5)
    done = cli(PROMPT, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "source": VALID,
        "valid": True,
        "errors": [],
        "model": "test-model",
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": None},
    }


@pytest.mark.parametrize(
    ("args", "connection", "message"),
    [
        (("  ",), None, "error: the prompt is empty"),
        ((PROMPT, "-c", "nowhere"), None, "no connection named 'nowhere'"),
        ((PROMPT,), '{"type": "http", "base_url": "http://x"}', "is a http connection, not an llm"),
        ((PROMPT,), '{"type": "llm", "base_url": "http://127.0.0.1:9"}', "has no default model"),
        ((PROMPT,), "{not json", "PLAIT_CONNECTION_LLM is not JSON"),
    ],
)
def test_cli_bad_input_exits_2(
    cli: Cli,
    provider: OpenAiServer,
    args: tuple[str, ...],
    connection: str | None,
    message: str,
) -> None:
    done = cli(*args, connection=connection)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert provider.requests == []


def test_cli_a_failing_provider_exits_1_without_the_key(provider: OpenAiServer, cli: Cli) -> None:
    provider.fail(400, f"key {KEY} may not use test-model")
    done = cli(PROMPT)
    assert done.returncode == 1
    assert "error: the model's provider failed" in done.stderr
    assert "may not use test-model" in done.stderr
    assert KEY not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
