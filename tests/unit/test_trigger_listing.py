"""What the workflows API shows of a trigger: no webhook secret, no broker password."""

from __future__ import annotations

import pytest

from plait.model import load_workflow
from plait.server.routes.workflows import _triggers, _without_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:s3cret@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("${{ secrets.BROKER_URL }}", "${{ secrets.BROKER_URL }}"),
    ],
)
def test_a_broker_urls_password_is_hidden(url: str, shown: str) -> None:
    assert _without_password(url) == shown


def test_listed_triggers_carry_no_credentials() -> None:
    source = (
        "name: t\ntriggers:\n"
        "  - webhook: {secret: literal-hook-secret}\n"
        "  - rabbitmq: {url: 'amqp://u:literal-pw@127.0.0.1:5672/', queue: q}\n"
        "steps:\n  - id: a\n    run: 'true'\n"
    )
    listed = repr(_triggers(load_workflow(source, "t.yaml").plan))
    assert "literal-hook-secret" not in listed
    assert "literal-pw" not in listed
