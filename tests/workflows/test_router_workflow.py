"""Tests of the ``conditional_router`` workflow (pattern 3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from service.runtime.registry import RegisteredWorkflow

RunWorkflow = Callable[..., dict[str, Any]]


def test_router_runs_three_text_analyses_for_text_input(visited_nodes: RunWorkflow) -> None:
    run = visited_nodes("conditional_router", type="text", content="Great product from Acme Corp!")

    assert sorted(run["nodes"]) == sorted(
        ["classifier", "text_sentiment", "text_entities", "text_keywords", "aggregator"]
    )
    assert run["state"]["final_analysis"] == {
        "content_type": "text_content",
        "analyses_performed": 3,
        "results": {
            "entities": ["Acme", "Corp"],
            "keywords": ["acme", "corp", "from"],
            "sentiment": "positive",
        },
    }


@pytest.mark.parametrize(
    ("content", "sentiment"),
    [("I love it, great!", "positive"), ("awful and broken", "negative"), ("a chair", "neutral")],
)
def test_router_text_sentiment_follows_the_words_used(
    run_workflow: RunWorkflow, content: str, sentiment: str
) -> None:
    state = run_workflow("conditional_router", type="text", content=content)

    assert state["final_analysis"]["results"]["sentiment"] == sentiment


def test_router_runs_three_image_analyses_for_image_input(visited_nodes: RunWorkflow) -> None:
    run = visited_nodes("conditional_router", type="image", content="photo.jpg")

    assert sorted(run["nodes"]) == sorted(
        ["classifier", "image_objects", "image_faces", "image_text", "aggregator"]
    )
    assert run["state"]["final_analysis"] == {
        "content_type": "image_content",
        "analyses_performed": 3,
        "results": {"objects": ["car", "tree", "person"], "faces": 2, "ocr": "Street Sign"},
    }


def test_router_runs_two_audio_analyses_for_audio_input(visited_nodes: RunWorkflow) -> None:
    run = visited_nodes("conditional_router", type="audio", content="clip.wav")

    assert sorted(run["nodes"]) == sorted(
        ["classifier", "audio_transcribe", "audio_sentiment", "aggregator"]
    )
    assert run["state"]["final_analysis"] == {
        "content_type": "audio_content",
        "analyses_performed": 2,
        "results": {"transcript": "Hello world", "audio_sentiment": "neutral"},
    }


def test_router_falls_back_to_the_generic_processor_for_unknown_input(
    visited_nodes: RunWorkflow,
) -> None:
    run = visited_nodes("conditional_router", type="unknown", content="???")

    assert run["nodes"] == ["classifier", "generic_processor", "aggregator"]
    assert run["state"]["final_analysis"] == {
        "content_type": "unknown_content",
        "analyses_performed": 1,
        "results": {"generic": "processed"},
    }


def test_router_classifier_declares_every_analysis_as_a_destination(
    builtin_workflows: dict[str, RegisteredWorkflow],
) -> None:
    graph = builtin_workflows["conditional_router"].graph
    classifier = next(node for node in graph.nodes if node.name == "classifier")
    analyses = {node.name for node in graph.nodes} - {"classifier", "aggregator"}

    assert len(analyses) == 9
    assert set(classifier.destinations) == analyses


@pytest.mark.parametrize(
    "bad_input",
    [
        {"type": "video", "content": "x"},
        {"type": "text"},
        {"content": "x"},
        {"type": "text", "content": "x", "language": "en"},
    ],
)
def test_router_input_requires_a_known_type_and_content(
    builtin_workflows: dict[str, RegisteredWorkflow], bad_input: dict[str, object]
) -> None:
    with pytest.raises(pydantic.ValidationError):
        builtin_workflows["conditional_router"].validate_input(bad_input)


def test_router_input_schema_lists_the_four_content_types(
    builtin_workflows: dict[str, RegisteredWorkflow],
) -> None:
    schema = builtin_workflows["conditional_router"].input_schema

    assert schema is not None
    assert schema["required"] == ["type", "content"]
    assert schema["$defs"]["ContentType"]["enum"] == ["text", "image", "audio", "unknown"]
