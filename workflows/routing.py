"""Pattern 3, conditional parallel routing: the content type picks which analyses run."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Command, StateGraph, workflow
from workflows._common import State


class ContentType(StrEnum):
    """The kinds of content ``conditional_router`` knows how to analyse."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    UNKNOWN = "unknown"


# Content type → (classification, analysis nodes run in parallel).
ROUTES: dict[ContentType, tuple[str, list[str]]] = {
    ContentType.TEXT: ("text_content", ["text_sentiment", "text_entities", "text_keywords"]),
    ContentType.IMAGE: ("image_content", ["image_objects", "image_faces", "image_text"]),
    ContentType.AUDIO: ("audio_content", ["audio_transcribe", "audio_sentiment"]),
    ContentType.UNKNOWN: ("unknown_content", ["generic_processor"]),
}
ANALYSIS_NODES = [node for _, nodes in ROUTES.values() for node in nodes]

POSITIVE = {"good", "great", "excellent", "love", "amazing", "happy", "nice", "best"}
NEGATIVE = {"bad", "terrible", "awful", "hate", "poor", "sad", "worst", "broken"}
STOPWORDS = {"the", "a", "an", "and", "or", "is", "are", "was", "of", "to", "in", "it", "this"}


class RouterInput(BaseModel):
    """Input of ``conditional_router``: the content and its type."""

    model_config = ConfigDict(extra="forbid")

    type: ContentType = Field(description="Content type; decides which analyses run.")
    content: str = Field(description="The text itself, or a reference to the image/audio.")


def _words(state: State) -> list[str]:
    return re.findall(r"[A-Za-z']+", str(state.get("content", "")))


def content_classifier(state: State) -> Command:
    """Classify the content by its declared type and fan out to that type's analyses."""
    try:
        content_type = ContentType(state.get("type", "unknown"))
    except ValueError:
        content_type = ContentType.UNKNOWN
    classification, nodes = ROUTES[content_type]
    return Command(update={"classification": classification}, goto=nodes)


def text_sentiment(state: State) -> dict[str, Any]:
    """Score sentiment by counting positive and negative words."""
    words = [w.lower() for w in _words(state)]
    score = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
    label = "positive" if score > 0 else "negative" if score < 0 else "neutral"
    return {"analysis": [{"type": "sentiment", "result": label}]}


def text_entities(state: State) -> dict[str, Any]:
    """Extract capitalised words (past the first word) as candidate named entities."""
    words = _words(state)
    entities = sorted({w for w in words[1:] if w[0].isupper()})
    return {"analysis": [{"type": "entities", "result": entities}]}


def text_keywords(state: State) -> dict[str, Any]:
    """Return the three most frequent non-stopwords."""
    counts = Counter(w.lower() for w in _words(state) if w.lower() not in STOPWORDS)
    keywords = [word for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]]
    return {"analysis": [{"type": "keywords", "result": keywords}]}


def _canned(kind: str, result: Any) -> Callable[[State], dict[str, Any]]:
    """Build a stand-in analysis for media this service cannot really inspect."""

    def analyse(state: State) -> dict[str, Any]:
        return {"analysis": [{"type": kind, "result": result, "source": state.get("content")}]}

    return analyse


STUB_ANALYSES: dict[str, Callable[[State], dict[str, Any]]] = {
    "image_objects": _canned("objects", ["car", "tree", "person"]),
    "image_faces": _canned("faces", 2),
    "image_text": _canned("ocr", "Street Sign"),
    "audio_transcribe": _canned("transcript", "Hello world"),
    "audio_sentiment": _canned("audio_sentiment", "neutral"),
    "generic_processor": _canned("generic", "processed"),
}


def results_aggregator(state: State) -> dict[str, Any]:
    """Combine the analyses of whichever route was taken into ``final_analysis``."""
    analyses = sorted(state.get("analysis", []), key=lambda item: item["type"])
    return {
        "final_analysis": {
            "content_type": state.get("classification", "unknown_content"),
            "analyses_performed": len(analyses),
            "results": {item["type"]: item["result"] for item in analyses},
        }
    }


@workflow("conditional_router", input_model=RouterInput)
def create_conditional_router() -> StateGraph:
    """Route content to type-specific parallel analyses and aggregate their results."""
    graph = StateGraph(state_reducers={"analysis": "extend"})
    graph.add_node("classifier", content_classifier, destinations=ANALYSIS_NODES)
    functions = {
        "text_sentiment": text_sentiment,
        "text_entities": text_entities,
        "text_keywords": text_keywords,
        **STUB_ANALYSES,
    }
    for node in ANALYSIS_NODES:
        graph.add_node(node, functions[node])
        graph.add_edge(node, "aggregator")
    graph.add_node("aggregator", results_aggregator, destinations=[])
    graph.set_entry_point("classifier")
    return graph
