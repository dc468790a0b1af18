"""``graphflow`` is the one import root: the engine's names, plus the service's ``workflow``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_from_graphflow_import_workflow_is_the_service_decorator():
    from graphflow import workflow
    from service.runtime.registry import workflow as service_workflow

    assert workflow is service_workflow


def test_engine_only_users_do_not_import_the_service():
    code = (
        "import sys, graphflow\n"
        "from graphflow import StateGraph, Command, Send\n"
        "print(sorted(m for m in ('service', 'fastapi', 'sqlalchemy') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_an_unknown_name_of_graphflow_raises_attribute_error_naming_it():
    import graphflow

    with pytest.raises(AttributeError, match="not_a_name"):
        graphflow.not_a_name  # noqa: B018
