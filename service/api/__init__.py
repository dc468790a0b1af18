"""The HTTP layer: routes, schemas, dependencies and request checks.

Imports run one way: ``api`` may use ``runtime`` and ``storage``; neither imports ``api``.
"""
