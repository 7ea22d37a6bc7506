"""Drafting a workflow from a sentence with an LLM (``plait draft``, ``POST /api/v1/drafts``).

The system prompt carries what a model needs to write a valid Plait workflow: the
workflow format's JSON Schema (``plait schema``, titles dropped), the actions of this
installation with their ``with:`` fields (one compact line per field, from the action
registry), and two short examples from ``examples/``. The answer's YAML (a code fence
around it is taken off) is checked by the same validator as ``plait validate``, with
line and column; when it is invalid, the errors go back to the model once for a
repair. The draft is returned with whatever errors remain: nothing is deployed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plait.ai.llm import ChatReply, Usage, chat
from plait.errors import PlaitError, ValidationError

if TYPE_CHECKING:
    from plait.actions.connections import Connection
    from plait.actions.registry import ActionRegistry

#: the longest prompt accepted, in characters
MAX_PROMPT_CHARS = 4000
#: the file name errors are reported under
DRAFT_FILE = "draft.yaml"
#: characters of an action's or a field's description kept in the action list
DESCRIPTION_CHARS = 90

INSTRUCTIONS = """\
You write Plait workflows: one YAML document that follows the JSON Schema and the
examples below. Rules: `name` is lower-case ([a-z0-9][a-z0-9_-]*); each step has a
unique `id` and either `run:` (a shell command) or `uses:` (one of the actions listed
below, with `with:` holding only that action's fields); steps run in order unless
`needs:` says otherwise; expressions are `${{ ... }}` over inputs, env, steps.<id>.outputs,
run and secrets; secrets come from `${{ secrets.NAME }}`, never written out; schedules
are `triggers: [{schedule: {cron: "..."}}]`; recovery steps go under `on_failure:`.
Answer with the YAML document only: no prose, no code fence."""

REPAIR = """\
Plait's validator found these problems in your workflow (LINE:COL: message):
{problems}
Answer with the whole corrected YAML document only: no prose, no code fence."""


class DraftInputError(PlaitError):
    """The prompt cannot be drafted from (empty, too long)."""


@dataclass(frozen=True)
class DraftError:
    """One problem left in a draft; ``line``/``column`` are 1-based, None if unknown."""

    line: int | None
    column: int | None
    message: str

    def as_output(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "message": self.message}

    def __str__(self) -> str:
        if self.line is None:
            return f"{DRAFT_FILE}: {self.message}"
        return f"{DRAFT_FILE}:{self.line}:{self.column or 0}: {self.message}"


@dataclass(frozen=True)
class Draft:
    source: str
    valid: bool
    errors: tuple[DraftError, ...]
    model: str
    usage: Usage

    def as_output(self) -> dict[str, Any]:
        """The shape of ``POST /api/v1/drafts``'s answer and ``plait draft --json``."""
        return {
            "source": self.source,
            "valid": self.valid,
            "errors": [e.as_output() for e in self.errors],
            "model": self.model,
            "usage": self.usage.as_output(),
        }


def check_prompt(prompt: str) -> str:
    """The prompt stripped; DraftInputError when empty or longer than MAX_PROMPT_CHARS."""
    text = prompt.strip() if isinstance(prompt, str) else ""
    if not text:
        raise DraftInputError("the prompt is empty: say what the workflow should do")
    if len(text) > MAX_PROMPT_CHARS:
        raise DraftInputError(
            f"the prompt is {len(text)} characters long; at most {MAX_PROMPT_CHARS} are accepted"
        )
    return text


async def draft_workflow(
    conn: Connection, prompt: str, *, actions: ActionRegistry, model: str | None = None
) -> Draft:
    """Ask ``conn``'s model for a workflow doing ``prompt``; validate it; repair once.

    Raises DraftInputError for a bad prompt and :class:`~plait.ai.llm.LlmError` when
    the provider fails; a draft that is still invalid is returned with its errors."""
    text = check_prompt(prompt)
    messages = [
        {"role": "system", "content": system_prompt(actions)},
        {"role": "user", "content": text},
    ]
    reply = await chat(conn, messages, model=model, temperature=0.2)
    usage = reply.usage
    source, errors = _validated(reply, actions)
    if errors:
        problems = "\n".join(
            f"{e.line or 0}:{e.column or 0}: {e.message}" if e.line else e.message for e in errors
        )
        messages += [
            {"role": "assistant", "content": source},
            {"role": "user", "content": REPAIR.format(problems=problems)},
        ]
        reply = await chat(conn, messages, model=model, temperature=0.0)
        usage = usage + reply.usage
        source, errors = _validated(reply, actions)
    return Draft(source, not errors, tuple(errors), reply.model, usage)


def validate_source(source: str, actions: ActionRegistry) -> list[DraftError]:
    """Every problem of ``source`` as ``plait validate`` reports it (none: valid)."""
    from plait.model import load_workflow

    if not source.strip():
        return [DraftError(None, None, "the model answered with no workflow")]
    try:
        load_workflow(source, DRAFT_FILE, actions.input_models())
    except ValidationError as exc:
        return [
            DraftError(p.line or None, p.col or None if p.line else None, p.message)
            for p in exc.problems
        ]
    return []


def _validated(reply: ChatReply, actions: ActionRegistry) -> tuple[str, list[DraftError]]:
    source = yaml_of(reply.text)
    return source, validate_source(source, actions)


_FENCED = re.compile(
    r"```[ \t]*(?:ya?ml)?[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL | re.IGNORECASE
)


def yaml_of(text: str) -> str:
    """The YAML of an answer: the first code fence's content when there is one (a model
    may add prose around it), else the whole text; always ending in one newline."""
    found = _FENCED.search(text)
    body = found.group(1) if found else text
    return body.strip("\n").rstrip() + "\n" if body.strip() else ""


# -- the system prompt ------------------------------------------------------------------
def system_prompt(actions: ActionRegistry) -> str:
    schema = json.dumps(_without_titles(_workflow_schema()), separators=(",", ":"))
    examples = "\n\n".join(f"# {name}\n{text.strip()}" for name, text in EXAMPLES)
    return (
        f"{INSTRUCTIONS}\n\n## JSON Schema of a workflow\n{schema}\n\n"
        f"## Actions (`uses:`); fields of `with:` (! = required)\n{action_list(actions)}\n\n"
        f"## Examples\n{examples}\n"
    )


def _workflow_schema() -> dict[str, Any]:
    from plait.model.schema import workflow_json_schema

    return workflow_json_schema()


def _without_titles(node: Any) -> Any:
    """The schema without ``title`` keys (the property names say the same)."""
    if isinstance(node, dict):
        return {
            k: _without_titles(v)
            for k, v in node.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [_without_titles(v) for v in node]
    return node


def action_list(actions: ActionRegistry) -> str:
    """One line per action (name: description) and one per field of its ``with:``."""
    lines = []
    for found in actions.describe():
        lines.append(f"- {found['name']}: {_short(found['description'])}")
        schema = found["input_schema"] or {}
        required = set(schema.get("required", ()))
        for field, spec in (schema.get("properties") or {}).items():
            mark = "!" if field in required else ""
            about = _short(spec.get("description", ""))
            lines.append(f"    {field}{mark} ({_type_of(spec)})" + (f": {about}" if about else ""))
    return "\n".join(lines)


def _type_of(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return "|".join(json.dumps(v) for v in spec["enum"])
    if "const" in spec:
        return json.dumps(spec["const"])
    kinds = spec.get("anyOf", [spec])
    names = []
    for kind in kinds:
        name = kind.get("type") or ("object" if "$ref" in kind else "any")
        if name == "array" and isinstance(kind.get("items"), dict):
            name = f"list of {kind['items'].get('type', 'object')}"
        if name != "null":
            names.append(str(name))
    return " or ".join(dict.fromkeys(names)) or "any"


def _short(text: str | None) -> str:
    first = " ".join((text or "").split())
    return first if len(first) <= DESCRIPTION_CHARS else first[: DESCRIPTION_CHARS - 1] + "…"


#: examples/hello.yaml and examples/rollback.yaml (a test keeps them equal to the files,
#: which are not installed with the package)
EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "examples/hello.yaml",
        """\
# The smallest useful workflow: an input, a shell step with an output, a Python step.
#   plait run examples/hello.yaml -i name=Ada
name: hello
description: Greet someone and report which Python ran the greeting
labels: {stage: development, automation: fully-automated, trigger: manual}
inputs:
  name: {type: string, default: world, description: Who to greet}
steps:
  - id: greet
    run: |
      echo "Hello, ${{ inputs.name }}!"
      echo "greeting=Hello, ${{ inputs.name }}" >> "$PLAIT_OUTPUT"
  - id: python
    uses: python
    with: {function: "platform:python_version"}
    outputs: {version: "${{ result.outputs.result }}"}
outputs:
  greeting: "${{ steps.greet.outputs.greeting }}"
  python: "${{ steps.python.outputs.version }}"
""",
    ),
    (
        "examples/rollback.yaml",
        """\
# A failed migration rolls back; the cleanup runs either way and the run ends failed.
#   plait run examples/rollback.yaml            # exit code 1, rollback ran
#   plait run examples/rollback.yaml -i fail=false
name: rollback
description: Apply a database migration and roll it back when it fails
labels: {stage: production, service: database, automation: semi-automated, trigger: manual}
inputs:
  fail: {type: boolean, default: true}
steps:
  - id: migrate
    run: |
      echo "applying migration 0042"
      if [ "${{ inputs.fail }}" = "true" ]; then echo "migration 0042 failed" >&2; exit 1; fi
  - id: verify
    run: echo "schema verified"
  - id: report-failure
    if: failure()
    run: echo "migration failed; rolling back"
on_failure:
  - id: rollback
    run: |
      echo "rolling back migration 0042"
      echo "rolled_back=true" >> "$PLAIT_OUTPUT"
finally:
  - id: cleanup
    run: echo "releasing the migration lock"
""",
    ),
)
