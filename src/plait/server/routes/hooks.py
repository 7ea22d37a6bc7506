"""Routes: hooks — ``POST /hooks/{workflow}`` starts a run from a signed webhook.

No bearer token: the request is authentic when ``X-Plait-Signature: sha256=<hex>`` is
the HMAC-SHA256 of the raw body under the secret of one of the workflow's ``webhook``
triggers (compared in constant time by :func:`plait.triggers.webhook.verify`). A
trigger's ``secret`` is usually ``${{ secrets.NAME }}``, looked up like any secret
(the workflow's namespace, then ``*``, then ``PLAIT_SECRET_<NAME>``); a literal string
works too. With ``require_timestamp: true`` the signature covers
``X-Plait-Timestamp + "." + body`` and a timestamp older than five minutes is refused.

Decisions:

* An unknown workflow, one without a webhook trigger and one whose secret is not set
  all answer the same 404, so the endpoint does not reveal which workflows exist.
* ``X-Plait-Delivery`` makes a delivery start at most one run: a repeated delivery
  answers **200** with the run the first one started (``"duplicate": true``), so a
  sender retrying after a timeout sees success and no second run starts.
* The parsed body becomes ``trigger`` in the run's scope; inputs take their defaults
  (query parameters are not signed, so they never feed a run). A workflow with a
  required input and no default cannot start from a webhook: 422.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from plait.errors import NotFound
from plait.model.inputs import has_lone_surrogate
from plait.runtime.ids import new_run_id
from plait.server.errors import ApiError
from plait.server.ratelimit import rate_limit
from plait.server.services import Services, get_services
from plait.triggers.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRejected,
    delivery_key,
    parse_body,
    verify,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["hooks"])

ServicesDep = Annotated[Services, Depends(get_services)]

_SECRET_REF = re.compile(r"^\$\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_NO_HOOK = "no webhook trigger for this workflow"
#: Idempotency scope of webhook deliveries (keys are ``{workflow}/{delivery id}``).
DELIVERY_SCOPE = "webhook"


class HookStarted(BaseModel):
    run_id: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class _Request:
    workflow: str
    body: bytes
    content_type: str | None
    signature: str | None
    timestamp: str | None
    delivery: str | None


def _secrets(services: Services, namespace: str, triggers: list[dict[str, Any]]) -> list[str]:
    """Every webhook trigger's secret, references resolved (several: any may sign)."""
    found: list[str] = []
    for trigger in triggers:
        secret = trigger.get("secret")
        if not isinstance(secret, str) or not secret:
            continue
        ref = _SECRET_REF.match(secret.strip())
        if ref is None:
            found.append(secret)
            continue
        value = services.runs.secrets(namespace, [ref.group(1)]).get(ref.group(1))
        if value:
            found.append(value)
    return found


def _receive(services: Services, req: _Request) -> tuple[str, bool]:
    """Verify, dedupe and start; returns the run id and whether it is a duplicate."""
    try:
        workflow = services.server_store.get_workflow(req.workflow)
    except NotFound:
        raise ApiError(404, _NO_HOOK) from None
    version = services.store.get_version(workflow.version_id)
    plan = services.runs.plan(version.id)
    hooks = [dict(t) for t in plan.triggers if t.get("kind") == "webhook"]
    secrets = _secrets(services, workflow.namespace, hooks) if hooks else []
    if not secrets:
        if hooks:
            log.warning("webhook for %s refused: its secret is not set", req.workflow)
        raise ApiError(404, _NO_HOOK)
    verify(
        secrets,
        req.body,
        req.signature,
        timestamp_header=req.timestamp,
        require_timestamp=any(bool(t.get("require_timestamp")) for t in hooks),
        now=services.clock(),
    )
    payload = parse_body(req.body, req.content_type, max_bytes=services.max_body_bytes)
    if has_lone_surrogate(payload):
        raise ApiError(422, "the body contains a lone UTF-16 surrogate, which is not text")
    key = delivery_key(req.workflow, req.delivery)
    run_id = new_run_id(services.clock())
    if key is not None:
        earlier = services.server_store.remember_idempotency(DELIVERY_SCOPE, key, run_id)
        if earlier:
            return earlier, True
    trigger = {"type": "webhook", "payload": payload, "delivery": req.delivery}
    try:
        services.runs.start(version, {}, trigger=trigger, run_id=run_id)
    except Exception:
        if key is not None:  # nothing started: a corrected redelivery may use the id
            services.server_store.forget_idempotency(DELIVERY_SCOPE, key)
        raise
    return run_id, False


@router.post(
    "/hooks/{workflow}",
    response_model=HookStarted,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(rate_limit("hooks"))],  # 429 + Retry-After per client address
    responses={
        200: {"model": HookStarted, "description": "A repeated X-Plait-Delivery."},
        401: {"description": "Missing or wrong signature, or a stale timestamp."},
        404: {"description": "No such workflow, or it has no webhook trigger."},
    },
    summary="Webhook trigger",
)
async def hook(
    workflow: str, request: Request, response: Response, services: ServicesDep
) -> HookStarted:
    """Start a run of the workflow's current version from a signed request (no bearer
    token). The body becomes `trigger` in the run's scope. 202 with the run id; 200
    with the first run's id for a repeated `X-Plait-Delivery`."""
    h = request.headers
    req = _Request(
        workflow=workflow,
        body=await request.body(),
        content_type=h.get("content-type"),
        signature=h.get(SIGNATURE_HEADER),
        timestamp=h.get(TIMESTAMP_HEADER),
        delivery=h.get(DELIVERY_HEADER),
    )
    try:
        run_id, duplicate = await run_in_threadpool(_receive, services, req)
    except WebhookRejected as exc:
        raise ApiError(exc.status, exc.reason) from None
    if duplicate:
        response.status_code = status.HTTP_200_OK
    else:
        services.runs.wake()  # from the loop's thread: the pool thread's call may not wake it
    return HookStarted(run_id=run_id, duplicate=duplicate)
