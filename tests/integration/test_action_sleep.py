"""The sleep action asks for a durable wait instead of sleeping in the worker."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from plait.actions.base import ActionContext
from plait.actions.sleep import SleepAction, SleepInput


def make_ctx() -> ActionContext:
    return ActionContext(
        run_id="r", workflow="wf", step="s", attempt=1, workdir=Path("."), env={},
        log=lambda stream, line: None, mask=lambda text: text,
    )  # fmt: skip


@pytest.mark.parametrize(("duration", "seconds"), [("1h30m", 5400), (90, 90), ("500ms", 0.5)])
async def test_a_duration_suspends_until_now_plus_it(duration: str | int, seconds: float) -> None:
    before = time.time()
    result = await SleepAction().execute(make_ctx(), SleepInput(duration=duration))
    assert result.suspend_until is not None
    assert before + seconds <= result.suspend_until <= time.time() + seconds
    assert result.outputs == {}
    assert result.wait_reason is not None
    assert result.wait_reason.startswith("sleeping until 20")


async def test_until_a_time() -> None:
    when = datetime.now(UTC) + timedelta(days=2)
    result = await SleepAction().execute(make_ctx(), SleepInput(until=when.isoformat()))
    assert result.suspend_until == pytest.approx(when.timestamp())
    assert result.wait_reason == f"sleeping until {when.isoformat(timespec='seconds')}"


async def test_a_naive_time_is_utc_and_the_past_does_not_wait() -> None:
    inp = SleepInput.model_validate({"until": "2001-02-03T04:05:06"})
    assert inp.until == datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    result = await SleepAction().execute(make_ctx(), inp)
    assert result.suspend_until is None
    assert "slept_until" in result.outputs


async def test_resume_reports_when_the_wait_ended() -> None:
    result = await SleepAction().resume(make_ctx(), SleepInput(duration="5m"))
    ended = datetime.fromisoformat(result.outputs["slept_until"])
    assert abs(ended.timestamp() - time.time()) < 2
    assert result.suspend_until is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "either duration or until"),
        ({"duration": "5m", "until": "2030-01-01T00:00:00Z"}, "either duration or until"),
        ({"duration": "soon"}, "not a duration"),
        ({"duration": -1}, "cannot be negative"),
        ({"until": "tomorrow"}, "datetime"),
    ],
)
def test_bad_input(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SleepInput.model_validate(data)
