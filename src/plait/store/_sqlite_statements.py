"""The SQLite statements of :class:`plait.store.sql.SqlStore`, compiled.

Written by ``python -m plait.store.lite``; do not edit (a test compares it with a
fresh compilation). See :mod:`plait.store.lite`."""

from typing import Any

REVISION = "0011"

STATEMENTS: dict[str, Any] = {
    "update_run": {
        "sql": "UPDATE runs SET version_id=?, status=?, inputs=?, sealed_inputs=?, "
        '"trigger"=?, failed_phases=?, cancel_requested=?, timed_out=?, '
        "outputs=?, error=?, reason=?, started_at=?, finished_at=?, deadline=?, "
        "attempt=?, version=? WHERE runs.id = ? AND runs.version = ?",
        "positional": True,
        "params": [
            ["version_id", "version_id", None, True, None],
            ["status", "status", None, True, None],
            ["inputs", "inputs", None, True, "json"],
            ["sealed_inputs", "sealed_inputs", None, True, "binary"],
            ["trigger", "trigger", None, True, "json"],
            ["failed_phases", "failed_phases", None, True, "json"],
            ["cancel_requested", "cancel_requested", None, True, "bool"],
            ["timed_out", "timed_out", None, True, "bool"],
            ["outputs", "outputs", None, True, "json"],
            ["error", "error", None, True, None],
            ["reason", "reason", None, True, None],
            ["started_at", "started_at", None, True, "float"],
            ["finished_at", "finished_at", None, True, "float"],
            ["deadline", "deadline", None, True, "float"],
            ["attempt", "attempt", None, True, None],
            ["version", "version", None, True, None],
            ["b_id", "b_id", None, True, None],
            ["b_expected", "b_expected", None, True, None],
        ],
        "results": {},
    },
    "bump_run": {
        "sql": "UPDATE runs SET version=? WHERE runs.id = ? AND runs.version = ?",
        "positional": True,
        "params": [
            ["version", "version", None, True, None],
            ["b_id", "b_id", None, True, None],
            ["b_expected", "b_expected", None, True, None],
        ],
        "results": {},
    },
    "insert_run": {
        "sql": "INSERT INTO runs (id, workflow, namespace, version_id, status, inputs, "
        'sealed_inputs, "trigger", failed_phases, cancel_requested, timed_out, '
        "outputs, error, reason, created_at, started_at, finished_at, deadline, "
        "attempt, version, parent_run_id, concurrency_key) VALUES (?, ?, ?, ?, "
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "positional": True,
        "params": [
            ["id", "id", None, True, None],
            ["workflow", "workflow", None, True, None],
            ["namespace", "namespace", None, True, None],
            ["version_id", "version_id", None, True, None],
            ["status", "status", None, True, None],
            ["inputs", "inputs", None, True, "json"],
            ["sealed_inputs", "sealed_inputs", None, True, "binary"],
            ["trigger", "trigger", None, True, "json"],
            ["failed_phases", "failed_phases", None, True, "json"],
            ["cancel_requested", "cancel_requested", None, True, "bool"],
            ["timed_out", "timed_out", None, True, "bool"],
            ["outputs", "outputs", None, True, "json"],
            ["error", "error", None, True, None],
            ["reason", "reason", None, True, None],
            ["created_at", "created_at", None, True, "float"],
            ["started_at", "started_at", None, True, "float"],
            ["finished_at", "finished_at", None, True, "float"],
            ["deadline", "deadline", None, True, "float"],
            ["attempt", "attempt", None, True, None],
            ["version", "version", None, True, None],
            ["parent_run_id", "parent_run_id", None, True, None],
            ["concurrency_key", "concurrency_key", None, True, None],
        ],
        "results": {},
    },
    "insert_steps": {
        "sql": 'INSERT INTO steps (run_id, "key", node, status, attempt, '
        "interruptions, attempt_base, parent, item, idx, items, outputs, "
        "sealed_outputs, error, reason, available_at, started_at, "
        "finished_at, queue, runs_on, priority) VALUES (?, ?, ?, ?, ?, ?, ?, "
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "positional": True,
        "params": [
            ["run_id", "run_id", None, True, None],
            ["key", "key", None, True, None],
            ["node", "node", None, True, None],
            ["status", "status", None, True, None],
            ["attempt", "attempt", None, True, None],
            ["interruptions", "interruptions", None, True, None],
            ["attempt_base", "attempt_base", None, True, None],
            ["parent", "parent", None, True, None],
            ["item", "item", None, True, "json"],
            ["idx", "idx", None, True, None],
            ["items", "items", None, True, None],
            ["outputs", "outputs", None, True, "json"],
            ["sealed_outputs", "sealed_outputs", None, True, "binary"],
            ["error", "error", None, True, None],
            ["reason", "reason", None, True, None],
            ["available_at", "available_at", None, True, "float"],
            ["started_at", "started_at", None, True, "float"],
            ["finished_at", "finished_at", None, True, "float"],
            ["queue", "queue", None, True, None],
            ["runs_on", "runs_on", None, True, "json"],
            ["priority", "priority", None, True, None],
        ],
        "results": {},
    },
    "upsert_steps": {
        "sql": 'INSERT INTO steps (run_id, "key", node, status, attempt, '
        "interruptions, attempt_base, parent, item, idx, items, outputs, "
        "sealed_outputs, error, reason, available_at, started_at, "
        "finished_at, queue, runs_on, priority) VALUES (?, ?, ?, ?, ?, ?, ?, "
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, "
        '"key") DO UPDATE SET node = excluded.node, status = excluded.status, '
        "attempt = excluded.attempt, interruptions = excluded.interruptions, "
        "attempt_base = excluded.attempt_base, parent = excluded.parent, item "
        "= excluded.item, idx = excluded.idx, items = excluded.items, outputs "
        "= excluded.outputs, sealed_outputs = excluded.sealed_outputs, error "
        "= excluded.error, reason = excluded.reason, available_at = "
        "excluded.available_at, started_at = excluded.started_at, finished_at "
        "= excluded.finished_at",
        "positional": True,
        "params": [
            ["run_id", "run_id", None, True, None],
            ["key", "key", None, True, None],
            ["node", "node", None, True, None],
            ["status", "status", None, True, None],
            ["attempt", "attempt", None, True, None],
            ["interruptions", "interruptions", None, True, None],
            ["attempt_base", "attempt_base", None, True, None],
            ["parent", "parent", None, True, None],
            ["item", "item", None, True, "json"],
            ["idx", "idx", None, True, None],
            ["items", "items", None, True, None],
            ["outputs", "outputs", None, True, "json"],
            ["sealed_outputs", "sealed_outputs", None, True, "binary"],
            ["error", "error", None, True, None],
            ["reason", "reason", None, True, None],
            ["available_at", "available_at", None, True, "float"],
            ["started_at", "started_at", None, True, "float"],
            ["finished_at", "finished_at", None, True, "float"],
            ["queue", "queue", None, True, None],
            ["runs_on", "runs_on", None, True, "json"],
            ["priority", "priority", None, True, None],
        ],
        "results": {},
    },
    "upsert_attempts": {
        "sql": "INSERT INTO attempts (run_id, step, attempt, status, started_at, "
        "finished_at, error, worker, lease_until) VALUES (?, ?, ?, ?, ?, "
        "?, ?, ?, ?) ON CONFLICT (run_id, step, attempt) DO UPDATE SET "
        "status = excluded.status, started_at = excluded.started_at, "
        "finished_at = excluded.finished_at, error = excluded.error, "
        "worker = excluded.worker, lease_until = excluded.lease_until",
        "positional": True,
        "params": [
            ["run_id", "run_id", None, True, None],
            ["step", "step", None, True, None],
            ["attempt", "attempt", None, True, None],
            ["status", "status", None, True, None],
            ["started_at", "started_at", None, True, "float"],
            ["finished_at", "finished_at", None, True, "float"],
            ["error", "error", None, True, None],
            ["worker", "worker", None, True, None],
            ["lease_until", "lease_until", None, True, "float"],
        ],
        "results": {},
    },
    "insert_events": {
        "sql": "INSERT INTO events (run_id, type, step, data, at) VALUES (?, ?, ?, ?, ?)",
        "positional": True,
        "params": [
            ["run_id", "run_id", None, True, None],
            ["type", "type", None, True, None],
            ["step", "step", None, True, None],
            ["data", "data", None, True, "json"],
            ["at", "at", None, True, "float"],
        ],
        "results": {},
    },
    "insert_logs": {
        "sql": "INSERT INTO logs (run_id, step, attempt, stream, line, at) VALUES (?, "
        "?, ?, ?, ?, ?)",
        "positional": True,
        "params": [
            ["run_id", "run_id", None, True, None],
            ["step", "step", None, True, None],
            ["attempt", "attempt", None, True, None],
            ["stream", "stream", None, True, None],
            ["line", "line", None, True, None],
            ["at", "at", None, True, "float"],
        ],
        "results": {},
    },
    "claim": {
        "sql": 'SELECT steps.run_id, steps."key", steps.status, steps.attempt, '
        "steps.available_at \n"
        "FROM steps \n"
        "WHERE (steps.status = 'queued' OR steps.status = 'retrying') AND "
        "(steps.available_at IS NULL OR steps.available_at <= ?) OR steps.status = "
        "'waiting' AND steps.available_at <= ? ORDER BY steps.available_at ASC NULLS "
        "FIRST\n"
        " LIMIT ? OFFSET ?",
        "positional": True,
        "params": [
            ["now", "now", None, True, "float"],
            ["now", "now", None, True, "float"],
            ["lim", "lim", None, True, None],
            ["param_1", "param_1", 0, False, None],
        ],
        "results": {},
    },
    "claim_parts": [
        {
            "sql": 'SELECT steps.run_id, steps."key", steps.status, steps.attempt, '
            "steps.available_at \n"
            "FROM steps \n"
            "WHERE steps.status = 'queued' AND (steps.available_at IS NULL OR "
            "steps.available_at <= ?) ORDER BY steps.available_at\n"
            " LIMIT ? OFFSET ?",
            "positional": True,
            "params": [
                ["now", "now", None, True, "float"],
                ["lim", "lim", None, True, None],
                ["param_1", "param_1", 0, False, None],
            ],
            "results": {},
        },
        {
            "sql": 'SELECT steps.run_id, steps."key", steps.status, steps.attempt, '
            "steps.available_at \n"
            "FROM steps \n"
            "WHERE steps.status = 'retrying' AND (steps.available_at IS NULL OR "
            "steps.available_at <= ?) ORDER BY steps.available_at\n"
            " LIMIT ? OFFSET ?",
            "positional": True,
            "params": [
                ["now", "now", None, True, "float"],
                ["lim", "lim", None, True, None],
                ["param_1", "param_1", 0, False, None],
            ],
            "results": {},
        },
        {
            "sql": 'SELECT steps.run_id, steps."key", steps.status, steps.attempt, '
            "steps.available_at \n"
            "FROM steps \n"
            "WHERE steps.status = 'waiting' AND steps.available_at <= ? ORDER BY "
            "steps.available_at\n"
            " LIMIT ? OFFSET ?",
            "positional": True,
            "params": [
                ["now", "now", None, True, "float"],
                ["lim", "lim", None, True, None],
                ["param_1", "param_1", 0, False, None],
            ],
            "results": {},
        },
    ],
    "claim_run": {
        "sql": 'SELECT steps.run_id, steps."key", steps.status, steps.attempt, '
        "steps.available_at \n"
        "FROM steps \n"
        "WHERE ((steps.status = 'queued' OR steps.status = 'retrying') AND "
        "(steps.available_at IS NULL OR steps.available_at <= ?) OR steps.status "
        "= 'waiting' AND steps.available_at <= ?) AND steps.run_id = ? ORDER BY "
        "steps.priority DESC, steps.available_at ASC NULLS FIRST\n"
        " LIMIT ? OFFSET ?",
        "positional": True,
        "params": [
            ["now", "now", None, True, "float"],
            ["now", "now", None, True, "float"],
            ["run", "run", None, True, None],
            ["lim", "lim", None, True, None],
            ["param_1", "param_1", 0, False, None],
        ],
        "results": {},
    },
    "claim_queue": {
        "sql": "WITH due_0 AS \n"
        '(SELECT steps.run_id AS run_id, steps."key" AS "key", steps.status AS '
        "status, steps.attempt AS attempt, steps.available_at AS available_at, "
        "steps.priority AS priority \n"
        "FROM steps \n"
        "WHERE steps.status = 'queued' AND steps.queue = ? AND (steps.runs_on "
        "= '{}' OR NOT EXISTS (SELECT 1 FROM json_each(steps.runs_on) AS need "
        "WHERE NOT EXISTS (SELECT 1 FROM json_each(?) AS have WHERE have.key = "
        "need.key AND have.value = need.value))) AND (steps.available_at IS "
        "NULL OR steps.available_at <= ?) ORDER BY steps.priority DESC, "
        "steps.available_at\n"
        " LIMIT ? OFFSET ?), \n"
        "due_1 AS \n"
        '(SELECT steps.run_id AS run_id, steps."key" AS "key", steps.status AS '
        "status, steps.attempt AS attempt, steps.available_at AS available_at, "
        "steps.priority AS priority \n"
        "FROM steps \n"
        "WHERE steps.status = 'retrying' AND (steps.available_at IS NULL OR "
        "steps.available_at <= ?) AND steps.queue = ? AND (steps.runs_on = "
        "'{}' OR NOT EXISTS (SELECT 1 FROM json_each(steps.runs_on) AS need "
        "WHERE NOT EXISTS (SELECT 1 FROM json_each(?) AS have WHERE have.key = "
        "need.key AND have.value = need.value))) ORDER BY steps.available_at\n"
        " LIMIT ? OFFSET ?), \n"
        "due_2 AS \n"
        '(SELECT steps.run_id AS run_id, steps."key" AS "key", steps.status AS '
        "status, steps.attempt AS attempt, steps.available_at AS available_at, "
        "steps.priority AS priority \n"
        "FROM steps \n"
        "WHERE steps.status = 'waiting' AND steps.available_at <= ? AND "
        "steps.queue = ? AND (steps.runs_on = '{}' OR NOT EXISTS (SELECT 1 "
        "FROM json_each(steps.runs_on) AS need WHERE NOT EXISTS (SELECT 1 FROM "
        "json_each(?) AS have WHERE have.key = need.key AND have.value = "
        "need.value))) ORDER BY steps.available_at\n"
        " LIMIT ? OFFSET ?)\n"
        ' SELECT due_0.run_id, due_0."key", due_0.status, due_0.attempt, '
        "due_0.available_at, due_0.priority \n"
        'FROM due_0 UNION ALL SELECT due_1.run_id, due_1."key", due_1.status, '
        "due_1.attempt, due_1.available_at, due_1.priority \n"
        'FROM due_1 UNION ALL SELECT due_2.run_id, due_2."key", due_2.status, '
        "due_2.attempt, due_2.available_at, due_2.priority \n"
        "FROM due_2",
        "positional": True,
        "params": [
            ["queue", "queue", None, True, None],
            ["tags", "tags", None, True, "json"],
            ["now", "now", None, True, "float"],
            ["lim", "lim", None, True, None],
            ["param_1", "param_1", 0, False, None],
            ["now", "now", None, True, "float"],
            ["queue", "queue", None, True, None],
            ["tags", "tags", None, True, "json"],
            ["lim", "lim", None, True, None],
            ["param_2", "param_2", 0, False, None],
            ["now", "now", None, True, "float"],
            ["queue", "queue", None, True, None],
            ["tags", "tags", None, True, "json"],
            ["lim", "lim", None, True, None],
            ["param_3", "param_3", 0, False, None],
        ],
        "results": {},
    },
    "start_steps": {
        "sql": "UPDATE steps SET status=?, attempt=?, reason=?, available_at=?, "
        "started_at=coalesce(steps.started_at, ?) WHERE steps.run_id = ? AND "
        'steps."key" = ?',
        "positional": True,
        "params": [
            ["status", "status", "running", False, None],
            ["b_attempt", "b_attempt", None, True, None],
            ["reason", "reason", None, False, None],
            ["available_at", "available_at", None, False, "float"],
            ["b_now", "b_now", None, True, None],
            ["b_run", "b_run", None, True, None],
            ["b_key", "b_key", None, True, None],
        ],
        "results": {},
    },
    "hold_timers": {
        "sql": 'UPDATE steps SET available_at=? WHERE steps.run_id = ? AND steps."key" = ?',
        "positional": True,
        "params": [
            ["b_lease", "b_lease", None, True, "float"],
            ["b_run", "b_run", None, True, None],
            ["b_key", "b_key", None, True, None],
        ],
        "results": {},
    },
    "renew": {
        "sql": "UPDATE attempts SET lease_until=? WHERE attempts.worker = ? AND "
        "attempts.status = 'running'",
        "positional": True,
        "params": [
            ["b_lease", "b_lease", None, True, "float"],
            ["b_worker", "b_worker", None, True, None],
        ],
        "results": {},
    },
    "load_run": {
        "sql": "SELECT runs.id, runs.workflow, runs.namespace, runs.version_id, "
        'runs.status, runs.inputs, runs.sealed_inputs, runs."trigger", '
        "runs.failed_phases, runs.cancel_requested, runs.timed_out, runs.outputs, "
        "runs.error, runs.reason, runs.created_at, runs.started_at, "
        "runs.finished_at, runs.deadline, runs.attempt, runs.version, "
        "runs.parent_run_id, runs.concurrency_key \n"
        "FROM runs \n"
        "WHERE runs.id = ?",
        "positional": True,
        "params": [["b_id", "b_id", None, True, None]],
        "results": {
            "inputs": "json",
            "trigger": "json",
            "failed_phases": "json",
            "cancel_requested": "bool",
            "timed_out": "bool",
            "outputs": "json",
        },
    },
    "load_steps": {
        "sql": 'SELECT steps.run_id, steps."key", steps.node, steps.status, '
        "steps.attempt, steps.interruptions, steps.attempt_base, steps.parent, "
        "steps.item, steps.idx, steps.items, steps.outputs, "
        "steps.sealed_outputs, steps.error, steps.reason, steps.available_at, "
        "steps.started_at, steps.finished_at, steps.queue, steps.runs_on, "
        "steps.priority \n"
        "FROM steps \n"
        'WHERE steps.run_id = ? ORDER BY steps."key"',
        "positional": True,
        "params": [["b_id", "b_id", None, True, None]],
        "results": {"item": "json", "outputs": "json", "runs_on": "json"},
    },
    "insert_workflow": {
        "sql": "INSERT INTO workflows (namespace, name, created_at, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (namespace, name) DO NOTHING",
        "positional": True,
        "params": [
            ["namespace", "namespace", None, True, None],
            ["name", "name", None, True, None],
            ["created_at", "created_at", None, True, "float"],
            ["updated_at", "updated_at", None, True, "float"],
        ],
        "results": {},
    },
    "workflow_id": {
        "sql": "SELECT workflows.id \n"
        "FROM workflows \n"
        "WHERE workflows.namespace = ? AND workflows.name = ?",
        "positional": True,
        "params": [
            ["b_namespace", "b_namespace", None, True, None],
            ["b_name", "b_name", None, True, None],
        ],
        "results": {},
    },
    "version_by_checksum": {
        "sql": "SELECT workflow_versions.id \n"
        "FROM workflow_versions \n"
        "WHERE workflow_versions.workflow_id = ? AND "
        "workflow_versions.checksum = ?\n"
        " LIMIT ? OFFSET ?",
        "positional": True,
        "params": [
            ["b_wf", "b_wf", None, True, None],
            ["b_checksum", "b_checksum", None, True, None],
            ["param_1", "param_1", 1, False, None],
            ["param_2", "param_2", 0, False, None],
        ],
        "results": {},
    },
    "max_version": {
        "sql": "SELECT coalesce(max(workflow_versions.version), ?) AS n \n"
        "FROM workflow_versions \n"
        "WHERE workflow_versions.workflow_id = ?",
        "positional": True,
        "params": [
            ["coalesce_1", "coalesce_1", 0, False, None],
            ["b_wf", "b_wf", None, True, None],
        ],
        "results": {},
    },
    "insert_version": {
        "sql": "INSERT INTO workflow_versions (workflow_id, version, source, "
        "checksum, author, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING "
        "id",
        "positional": True,
        "params": [
            ["workflow_id", "workflow_id", None, True, None],
            ["version", "version", None, True, None],
            ["source", "source", None, True, None],
            ["checksum", "checksum", None, True, None],
            ["author", "author", None, True, None],
            ["created_at", "created_at", None, True, "float"],
        ],
        "results": {},
    },
    "get_version": {
        "sql": "SELECT workflow_versions.id, workflow_versions.workflow_id, "
        "workflow_versions.version, workflow_versions.source, "
        "workflow_versions.checksum, workflow_versions.author, "
        "workflow_versions.created_at, workflows.namespace, workflows.name \n"
        "FROM workflow_versions JOIN workflows ON "
        "workflow_versions.workflow_id = workflows.id \n"
        "WHERE workflow_versions.id = ?",
        "positional": True,
        "params": [["b_id", "b_id", None, True, None]],
        "results": {},
    },
    "expired": {
        "sql": "SELECT attempts.run_id, attempts.step, attempts.attempt, attempts.status, "
        "attempts.started_at, attempts.finished_at, attempts.error, "
        "attempts.worker, attempts.lease_until \n"
        "FROM attempts \n"
        "WHERE attempts.status = 'running' AND attempts.lease_until < ? ORDER BY "
        "attempts.lease_until",
        "positional": True,
        "params": [["b_now", "b_now", None, True, "float"]],
        "results": {},
    },
    "expired_run": {
        "sql": "SELECT attempts.run_id, attempts.step, attempts.attempt, "
        "attempts.status, attempts.started_at, attempts.finished_at, "
        "attempts.error, attempts.worker, attempts.lease_until \n"
        "FROM attempts \n"
        "WHERE attempts.status = 'running' AND attempts.lease_until < ? AND "
        "attempts.run_id = ? ORDER BY attempts.lease_until",
        "positional": True,
        "params": [["b_now", "b_now", None, True, "float"], ["b_run", "b_run", None, True, None]],
        "results": {},
    },
    "next_due": {
        "sql": "SELECT min(steps.available_at) AS due \n"
        "FROM steps \n"
        "WHERE (steps.status = 'queued' OR steps.status = 'retrying' OR "
        "steps.status = 'waiting') AND steps.available_at IS NOT NULL",
        "positional": True,
        "params": [],
        "results": {},
    },
    "next_due_run": {
        "sql": "SELECT min(steps.available_at) AS due \n"
        "FROM steps \n"
        "WHERE (steps.status = 'queued' OR steps.status = 'retrying' OR "
        "steps.status = 'waiting') AND steps.available_at IS NOT NULL AND "
        "steps.run_id = ?",
        "positional": True,
        "params": [["b_run", "b_run", None, True, None]],
        "results": {},
    },
    "run_attempts": {
        "sql": "SELECT attempts.run_id, attempts.step, attempts.attempt, "
        "attempts.status, attempts.started_at, attempts.finished_at, "
        "attempts.error, attempts.worker, attempts.lease_until \n"
        "FROM attempts \n"
        "WHERE attempts.run_id = ? ORDER BY attempts.started_at, "
        "attempts.step, attempts.attempt",
        "positional": True,
        "params": [["b_run", "b_run", None, True, None]],
        "results": {},
    },
    "run_version": {
        "sql": "SELECT runs.id, runs.version \nFROM runs \nWHERE runs.id = ?",
        "positional": True,
        "params": [["b_id", "b_id", None, True, None]],
        "results": {},
    },
    "request_cancel": {
        "sql": "UPDATE runs SET cancel_requested=?, version=(runs.version + ?) "
        "WHERE runs.id = ? AND runs.status != ? AND runs.status != ? AND "
        "runs.status != ? AND runs.status != ?",
        "positional": True,
        "params": [
            ["cancel_requested", "cancel_requested", True, False, "bool"],
            ["version_1", "version_1", 1, False, None],
            ["b_id", "b_id", None, True, None],
            ["status_1", "status_1", "succeeded", False, None],
            ["status_2", "status_2", "failed", False, None],
            ["status_3", "status_3", "cancelled", False, None],
            ["status_4", "status_4", "timed_out", False, None],
        ],
        "results": {},
    },
    "run_exists": {
        "sql": "SELECT runs.id \nFROM runs \nWHERE runs.id = ?",
        "positional": True,
        "params": [["b_id", "b_id", None, True, None]],
        "results": {},
    },
    "read_logs": {
        "sql": "SELECT logs.id, logs.run_id, logs.step, logs.attempt, logs.stream, "
        "logs.line, logs.at \n"
        "FROM logs \n"
        "WHERE logs.run_id = ? AND logs.id > ? ORDER BY logs.id\n"
        " LIMIT ? OFFSET ?",
        "positional": True,
        "params": [
            ["b_run", "b_run", None, True, None],
            ["b_after", "b_after", None, True, None],
            ["b_limit", "b_limit", None, True, None],
            ["param_1", "param_1", 0, False, None],
        ],
        "results": {},
    },
    "read_step_logs": {
        "sql": "SELECT logs.id, logs.run_id, logs.step, logs.attempt, logs.stream, "
        "logs.line, logs.at \n"
        "FROM logs \n"
        "WHERE logs.run_id = ? AND logs.id > ? AND logs.step = ? ORDER BY "
        "logs.id\n"
        " LIMIT ? OFFSET ?",
        "positional": True,
        "params": [
            ["b_run", "b_run", None, True, None],
            ["b_after", "b_after", None, True, None],
            ["b_step", "b_step", None, True, None],
            ["b_limit", "b_limit", None, True, None],
            ["param_1", "param_1", 0, False, None],
        ],
        "results": {},
    },
    "read_events": {
        "sql": "SELECT events.id, events.run_id, events.type, events.step, "
        "events.data, events.at \n"
        "FROM events \n"
        "WHERE events.id > ? ORDER BY events.id\n"
        " LIMIT ? OFFSET ?",
        "positional": True,
        "params": [
            ["b_after", "b_after", None, True, None],
            ["b_limit", "b_limit", None, True, None],
            ["param_1", "param_1", 0, False, None],
        ],
        "results": {"data": "json"},
    },
    "read_run_events": {
        "sql": "SELECT events.id, events.run_id, events.type, events.step, "
        "events.data, events.at \n"
        "FROM events \n"
        "WHERE events.id > ? AND events.run_id = ? ORDER BY events.id\n"
        " LIMIT ? OFFSET ?",
        "positional": True,
        "params": [
            ["b_after", "b_after", None, True, None],
            ["b_run", "b_run", None, True, None],
            ["b_limit", "b_limit", None, True, None],
            ["param_1", "param_1", 0, False, None],
        ],
        "results": {"data": "json"},
    },
}
