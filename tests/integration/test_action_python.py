"""The python action calling real modules, including ones in the run's work directory."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from plait.actions.base import ActionContext, ActionFailed
from plait.actions.python import PythonAction, PythonInput


def make_ctx(workdir: Path) -> ActionContext:
    return ActionContext(
        run_id="r",
        workflow="wf",
        step="s",
        attempt=1,
        workdir=workdir,
        env={},
        log=lambda stream, line: None,
        mask=lambda text: text,
    )


@pytest.fixture
def module(tmp_path: Path) -> str:
    """A uniquely named module in the work directory (sys.modules is process-wide)."""
    name = f"wf_tasks_{uuid.uuid4().hex[:8]}"
    source = """
        import asyncio
        import threading

        def add(a, b=1):
            return {"sum": a + b, "thread": threading.current_thread().name}

        async def slow_double(x):
            await asyncio.sleep(0.01)
            return x * 2

        def nothing():
            return None

        def boom():
            raise KeyError("missing-key")

        def not_json():
            return {"when": object()}

        def nan():
            return float("nan")

        class Tools:
            @staticmethod
            def hello(name):
                return f"hello {name}"

        CONSTANT = 3
    """
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return name


async def call(tmp_path: Path, function: str, **args: object) -> dict[str, object]:
    inp = PythonInput(function=function, args=args)
    return (await PythonAction().execute(make_ctx(tmp_path), inp)).outputs


async def test_sync_function_returns_a_dict_of_outputs_off_the_loop(
    tmp_path: Path, module: str
) -> None:
    outputs = await call(tmp_path, f"{module}:add", a=2, b=3)
    assert outputs["sum"] == 5
    assert outputs["thread"] != "MainThread"


async def test_async_function_and_non_dict_result(tmp_path: Path, module: str) -> None:
    assert await call(tmp_path, f"{module}:slow_double", x=21) == {"result": 42}


async def test_dotted_form_and_attribute_paths(tmp_path: Path, module: str) -> None:
    assert await call(tmp_path, f"{module}.nothing") == {}
    assert await call(tmp_path, f"{module}:Tools.hello", name="ops") == {"result": "hello ops"}
    assert await call(tmp_path, "os.path:join", a="x") == {"result": "x"}


async def test_exceptions_become_failures_naming_the_type(tmp_path: Path, module: str) -> None:
    with pytest.raises(ActionFailed, match=r"^KeyError: 'missing-key'$") as e:
        await call(tmp_path, f"{module}:boom")
    assert e.value.retryable is True
    assert isinstance(e.value.__cause__, KeyError)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("no_such_module_xyz:f", "no module named 'no_such_module_xyz'"),
        ("{m}:missing", "has no attribute 'missing'"),
        ("{m}:CONSTANT", "int is not callable"),
        ("justaname", "write it as package.module:function"),
    ],
)
async def test_import_problems_are_not_retryable(
    tmp_path: Path, module: str, function: str, message: str
) -> None:
    with pytest.raises(ActionFailed, match=message) as e:
        await call(tmp_path, function.format(m=module))
    assert e.value.retryable is False


async def test_a_module_that_fails_to_import(tmp_path: Path) -> None:
    (tmp_path / "broken_mod_q1.py").write_text("def f(:\n")
    with pytest.raises(ActionFailed, match="importing broken_mod_q1 failed: SyntaxError"):
        await call(tmp_path, "broken_mod_q1:f")


async def test_wrong_arguments_are_reported_before_the_call(tmp_path: Path, module: str) -> None:
    with pytest.raises(ActionFailed, match="unexpected keyword argument 'c'") as e:
        await call(tmp_path, f"{module}:add", a=1, c=2)
    assert e.value.retryable is False


async def test_results_must_be_json(tmp_path: Path, module: str) -> None:
    with pytest.raises(ActionFailed, match="not JSON-serialisable"):
        await call(tmp_path, f"{module}:not_json")
    with pytest.raises(ActionFailed, match="not JSON-serialisable"):
        await call(tmp_path, f"{module}:nan")
