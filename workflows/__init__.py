"""GraphFlow's built-in workflows: the parallel patterns of the guide as registered graphs.

Each module registers one graph family with ``service.runtime.registry.workflow``; the service
finds them with ``service.runtime.registry.discover(["workflows", ...])``.
"""

from __future__ import annotations
