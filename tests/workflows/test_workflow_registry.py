"""Tests of ``service.runtime.registry``: registering, discovering and validating workflows."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pydantic
import pytest

from service.runtime.registry import RegisteredWorkflow, WorkflowRegistryError, discover, workflow

BUILTIN_NAMES = [
    "advanced_workflow",
    "approval",
    "basic_fanout",
    "conditional_router",
    "map_reduce",
    "pipeline",
    "resilient_processor",
]

HEADER = """\
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from graphflow_core import StateGraph
from service.runtime.registry import workflow
"""

ECHO = (
    HEADER
    + '''
CALLS: list[int] = []


class EchoInput(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str
    times: int = 2


@workflow("{pkg}_echo", input_model=EchoInput)
def create_echo() -> StateGraph:
    """Echo the text a number of times.

    Longer explanation that is not part of the description.
    """
    CALLS.append(1)
    graph = StateGraph()
    graph.add_node("echo", lambda state: {{"echo": state["text"] * state["times"]}})
    graph.set_entry_point("echo")
    return graph
'''
)

MakePackage = Callable[[dict[str, str]], str]


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakePackage]:
    """Create uniquely named packages on ``tmp_path``; ``{pkg}`` in sources is the name."""
    created: list[str] = []

    def make(files: dict[str, str]) -> str:
        name = f"userpkg_{uuid.uuid4().hex[:12]}"
        for relative, source in {"__init__.py": "", **files}.items():
            path = tmp_path / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source.format(pkg=name))
        monkeypatch.syspath_prepend(str(tmp_path))
        created.append(name)
        return name

    yield make
    for module in [m for m in sys.modules if m.split(".")[0] in created]:
        del sys.modules[module]


def test_discover_finds_the_six_builtin_workflows_sorted_by_name() -> None:
    assert list(discover(["workflows"])) == BUILTIN_NAMES


def test_builtin_workflows_have_a_description_and_an_input_schema(
    builtin_workflows: dict[str, RegisteredWorkflow],
) -> None:
    for name, registered in builtin_workflows.items():
        assert registered.name == name
        assert registered.description, name
        assert registered.input_schema is not None
        assert registered.input_schema["type"] == "object", name
    assert builtin_workflows["pipeline"].description == (
        "Preprocess input, then run two parallel stages of three processors each."
    )


def test_builtin_workflows_declare_where_every_node_without_edges_may_route(
    builtin_workflows: dict[str, RegisteredWorkflow],
) -> None:
    # Undeclared routes hide arrows from the diagram and make joins wait for "any node".
    for name, registered in builtin_workflows.items():
        graph = registered.graph
        sources = {source for source, _ in graph.edges}
        undeclared = [
            node.name
            for node in graph.nodes
            if node.destinations is None and node.name not in sources
        ]
        assert undeclared == [], name


def test_discover_finds_a_workflow_in_a_user_package_submodule(
    make_package: MakePackage,
) -> None:
    pkg = make_package({"graphs/__init__.py": "", "graphs/echo.py": ECHO})

    found = discover(["workflows", pkg])

    assert list(found) == sorted([*BUILTIN_NAMES, f"{pkg}_echo"])
    echo = found[f"{pkg}_echo"]
    assert echo.description == "Echo the text a number of times."
    assert echo.graph.invoke(echo.validate_input({"text": "ab"}))["echo"] == "abab"


def test_discover_returns_only_the_workflows_of_the_requested_packages(
    make_package: MakePackage,
) -> None:
    pkg = make_package({"echo.py": ECHO})
    discover([pkg])

    assert list(discover(["workflows"])) == BUILTIN_NAMES
    assert list(discover([pkg])) == [f"{pkg}_echo"]


def test_discover_calls_each_factory_once(make_package: MakePackage) -> None:
    pkg = make_package({"echo.py": ECHO})

    discover([pkg])

    assert sys.modules[f"{pkg}.echo"].CALLS == [1]


def test_validate_input_fills_defaults_and_keeps_extra_keys_the_model_allows(
    make_package: MakePackage,
) -> None:
    pkg = make_package({"echo.py": ECHO})
    echo = discover([pkg])[f"{pkg}_echo"]

    assert echo.validate_input({"text": "x", "note": "kept"}) == {
        "text": "x",
        "times": 2,
        "note": "kept",
    }
    with pytest.raises(pydantic.ValidationError):
        echo.validate_input({"times": 3})


def test_validate_input_without_a_model_returns_a_copy_of_the_input(
    builtin_workflows: dict[str, RegisteredWorkflow],
) -> None:
    untyped = RegisteredWorkflow("untyped", "", builtin_workflows["pipeline"].graph)
    data = {"anything": [1, 2]}

    assert untyped.input_schema is None
    result = untyped.validate_input(data)
    assert result == data
    assert result is not data


def test_registering_a_builtin_name_again_names_both_modules(make_package: MakePackage) -> None:
    source = (
        HEADER + '\n\n@workflow("pipeline")\ndef clash() -> StateGraph:\n    return StateGraph()\n'
    )
    pkg = make_package({"clash.py": source})

    with pytest.raises(WorkflowRegistryError) as caught:
        discover(["workflows", pkg])

    assert "workflows.pipeline" in str(caught.value)
    assert f"{pkg}.clash" in str(caught.value)


def test_a_module_that_fails_to_import_is_named_in_the_error(make_package: MakePackage) -> None:
    pkg = make_package({"good.py": ECHO, "sub/__init__.py": "", "sub/broken.py": "1 / 0\n"})

    with pytest.raises(WorkflowRegistryError, match=rf"'{pkg}\.sub\.broken'") as caught:
        discover([pkg])

    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_a_subpackage_that_fails_to_import_is_named_in_the_error(
    make_package: MakePackage,
) -> None:
    pkg = make_package({"sub/__init__.py": "raise RuntimeError('no config')\n"})

    with pytest.raises(WorkflowRegistryError, match=rf"'{pkg}\.sub'.*no config"):
        discover([pkg])


def test_a_missing_package_is_named_in_the_error() -> None:
    with pytest.raises(WorkflowRegistryError, match="'no_such_graphflow_package'"):
        discover(["workflows", "no_such_graphflow_package"])


def test_a_failing_factory_is_named_in_the_error(make_package: MakePackage) -> None:
    source = (
        HEADER
        + '\n\n@workflow("{pkg}_bad")\ndef bad() -> StateGraph:\n'
        + '    raise ValueError("cannot build")\n'
    )
    pkg = make_package({"bad.py": source})

    with pytest.raises(WorkflowRegistryError, match=rf"'{pkg}_bad'.*cannot build"):
        discover([pkg])


def test_a_graph_without_entry_point_fails_discovery_naming_the_workflow(
    make_package: MakePackage,
) -> None:
    source = HEADER + '\n\n@workflow("{pkg}_empty")\ndef empty() -> StateGraph:\n'
    source += '    return StateGraph().add_node("a", lambda state: None)\n'
    pkg = make_package({"empty.py": source})

    with pytest.raises(WorkflowRegistryError, match=rf"'{pkg}_empty'"):
        discover([pkg])


def test_a_factory_returning_something_else_than_a_graph_is_rejected(
    make_package: MakePackage,
) -> None:
    source = HEADER + '\n\n@workflow("{pkg}_dict")\ndef wrong():\n    return {{}}\n'
    pkg = make_package({"wrong.py": source})

    with pytest.raises(WorkflowRegistryError, match=rf"'{pkg}_dict'.*returned dict"):
        discover([pkg])


def test_a_factory_may_return_an_already_compiled_graph(make_package: MakePackage) -> None:
    source = HEADER + textwrap.dedent(
        '''
        @workflow("{pkg}_compiled", description="Explicit description.")
        def compiled():
            """Docstring that the explicit description overrides."""
            graph = StateGraph().add_node("a", lambda state: {{"a": 1}}).set_entry_point("a")
            return graph.compile(max_concurrent=2)
        '''
    )
    pkg = make_package({"compiled.py": source})

    registered = discover([pkg])[f"{pkg}_compiled"]

    assert registered.graph.max_concurrent == 2
    assert registered.description == "Explicit description."
    assert registered.input_model is None


def test_workflow_rejects_an_input_model_that_is_not_a_pydantic_model() -> None:
    with pytest.raises(TypeError, match="BaseModel"):
        workflow("typed", input_model=dict)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "has space", "slash/name", "-leading"])
def test_workflow_rejects_names_unfit_for_urls(name: str) -> None:
    with pytest.raises(WorkflowRegistryError, match="invalid workflow name"):
        workflow(name)


def test_discover_rejects_a_single_string_instead_of_a_list() -> None:
    with pytest.raises(TypeError):
        discover("workflows")
