"""Plait triggers: cron schedules, signed webhooks and event triggers.

Pure rules only — what is due, whether a request is authentic, which trigger an event
matches. The scheduler, the API routes and the store act on these answers.
"""

from plait.triggers.events import EventTrigger, Match, matches, type_matches, would_loop
from plait.triggers.schedule import (
    FirePlan,
    Schedule,
    count_fires,
    due_fires,
    fire_key,
    next_fire,
)
from plait.triggers.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRejected,
    delivery_key,
    parse_body,
    sign,
    verify,
)

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "EventTrigger",
    "FirePlan",
    "Match",
    "Schedule",
    "WebhookRejected",
    "count_fires",
    "delivery_key",
    "due_fires",
    "fire_key",
    "matches",
    "next_fire",
    "parse_body",
    "sign",
    "type_matches",
    "verify",
    "would_loop",
]
