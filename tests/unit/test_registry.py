"""The action registry: built-ins, entry points (from a real dist-info on sys.path),
registration, suggestions and lazy imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plait.actions.base import Action, ActionContext, ActionInput, ActionResult
from plait.actions.registry import BUILTINS as _BUILTIN_MAP
from plait.actions.registry import ActionRegistry
from plait.errors import PlaitError, UnknownAction

BUILTINS = sorted(_BUILTIN_MAP)
CORE = ["approval", "http", "notify", "python", "shell", "sleep", "workflow"]


def test_the_core_actions_of_design_are_built_in() -> None:
    assert set(CORE) <= set(BUILTINS)
    assert {"sql", "git", "file", "archive", "s3", "rabbitmq.publish"} <= set(BUILTINS)


class EchoInput(ActionInput):
    text: str


class EchoAction(Action):
    name = "echo"
    version = "2"
    description = "Echo text back."
    Input = EchoInput

    async def execute(self, ctx: ActionContext, input: EchoInput) -> ActionResult:
        return ActionResult(outputs={"text": input.text})


def install_fake_package(root: Path, entry_points: dict[str, str]) -> None:
    """A distribution ``plait-fake-actions`` with a module and entry points, in ``root``."""
    (root / "plait_fake_actions.py").write_text(
        textwrap.dedent(
            """
            from plait.actions.base import Action, ActionInput, ActionResult

            class DeployInput(ActionInput):
                target: str

            class DeployAction(Action):
                name = "deploy"
                version = "3"
                description = "Deploy somewhere."
                Input = DeployInput

                async def execute(self, ctx, input):
                    return ActionResult(outputs={"target": input.target})

            class NotAnAction:
                pass
            """
        )
    )
    dist = root / "plait_fake_actions-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: plait-fake-actions\nVersion: 1.0\n"
    )
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[plait.actions]\n{lines}\n")


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install_fake_package(
        tmp_path,
        {
            "deploy": "plait_fake_actions:DeployAction",
            "broken": "plait_fake_actions_missing_module:Thing",
            "wrong": "plait_fake_actions:NotAnAction",
            "shell": "plait_fake_actions:DeployAction",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtins_and_one_instance_per_name() -> None:
    registry = ActionRegistry(entry_point_group=None)
    assert registry.names() == BUILTINS
    shell = registry.get("shell")
    assert shell is registry.get("shell")
    assert type(shell).__name__ == "ShellAction"


def test_unknown_action_suggests_the_closest_name() -> None:
    registry = ActionRegistry(entry_point_group=None)
    with pytest.raises(UnknownAction, match=r"unknown action 'shel'; did you mean 'shell'\?"):
        registry.get("shel")
    with pytest.raises(
        UnknownAction,
        match=r"unknown action 'zzz' \(available: ai\.classify, ai\.decide, ai\.extract, ",
    ):
        registry.get("zzz")


def test_entry_points_are_loaded_and_broken_ones_reported(fake_package: Path) -> None:
    registry = ActionRegistry()
    deploy = registry.get("deploy")
    assert type(deploy).__name__ == "DeployAction"
    assert "deploy" in registry.names()
    assert set(registry.broken) == {"broken", "wrong"}
    assert "plait-fake-actions 1.0" in registry.broken["broken"]
    assert "ModuleNotFoundError" in registry.broken["broken"]
    with pytest.raises(UnknownAction, match="'broken' is installed but failed to load"):
        registry.get("broken")
    with pytest.raises(UnknownAction, match=r"not a subclass of plait\.actions\.Action"):
        registry.get("wrong")
    # An installed package cannot take over a built-in name.
    assert type(registry.get("shell")).__name__ == "ShellAction"


def test_describe_and_input_models_skip_broken_packages(fake_package: Path) -> None:
    registry = ActionRegistry()
    described = {d["name"]: d for d in registry.describe()}
    # (other installed packages, like examples/plugins, may add more)
    assert {*BUILTINS, "deploy"} <= set(described)
    assert not {"broken", "wrong"} & set(described)
    deploy = described["deploy"]
    assert (deploy["version"], deploy["description"]) == ("3", "Deploy somewhere.")
    assert deploy["source"] == "plait-fake-actions 1.0"
    assert deploy["input_schema"]["required"] == ["target"]
    assert described["shell"]["source"] == "builtin"
    assert "command" in described["shell"]["input_schema"]["properties"]
    assert described["shell"]["output_schema"]["properties"]["exit_code"]["type"] == "integer"
    models = registry.input_models()
    assert models["deploy"].model_validate({"target": "prod"})


def test_entry_points_are_read_only_when_needed(fake_package: Path) -> None:
    registry = ActionRegistry()
    registry.get("shell")
    assert registry.broken == {}  # built-ins need no entry points
    registry.names()
    assert set(registry.broken) == {"broken", "wrong"}


def test_register() -> None:
    registry = ActionRegistry(entry_point_group=None)
    registry.register(EchoAction)
    assert isinstance(registry.get("echo"), EchoAction)
    with pytest.raises(PlaitError, match="already registered"):
        registry.register(EchoAction)
    registry.register(EchoAction, name="shell", replace=True)
    assert isinstance(registry.get("shell"), EchoAction)
    with pytest.raises(PlaitError, match="not a subclass"):
        registry.register(dict)  # type: ignore[arg-type]


async def test_aclose_closes_the_instances() -> None:
    closed = []

    class Closing(EchoAction):
        name = "closing"

        async def aclose(self) -> None:
            closed.append(True)

    registry = ActionRegistry(builtins=False, entry_point_group=None)
    registry.register(Closing)
    registry.get("closing")
    await registry.aclose()
    assert closed == [True]


def test_importing_the_registry_is_cheap() -> None:
    code = (
        "import sys, plait.actions.registry as r\n"
        "assert 'httpx' not in sys.modules\n"
        "reg = r.ActionRegistry(entry_point_group=None)\n"
        "reg.get('shell'); reg.input_models()\n"
        "assert 'httpx' not in sys.modules, 'the http input model pulled in httpx'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
