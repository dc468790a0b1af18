"""Tests of the built-in workflows and the workflow registry."""

from __future__ import annotations
