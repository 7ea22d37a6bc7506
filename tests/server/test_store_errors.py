"""A database's own error message (tables, SQL) never reaches a client."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from plait.errors import NotFound, StoreError
from plait.server import errors


def _app() -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.get("/driver")
    def driver() -> None:
        raise StoreError(
            "database error: (psycopg.DataError) PostgreSQL text fields "
            "cannot contain NUL [SQL: SELECT logs.line FROM logs WHERE ...]"
        )

    @app.get("/domain")
    def domain() -> None:
        raise StoreError("a secret cannot be written without a key")

    @app.get("/missing")
    def missing() -> None:
        raise NotFound("run r-1 not found")

    return app


def test_the_drivers_message_stays_in_the_log() -> None:
    with TestClient(_app()) as client:
        r = client.get("/driver")
    assert r.status_code == 400
    assert "SQL" not in r.text
    assert "logs" not in r.text
    assert r.json()["error"]["message"] == "the database refused a value of this request"


def test_the_stores_own_messages_still_say_what_is_wrong() -> None:
    with TestClient(_app()) as client:
        assert client.get("/domain").json()["error"]["message"] == (
            "a secret cannot be written without a key"
        )
        assert client.get("/missing").status_code == 404
