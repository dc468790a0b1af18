"""The storage layer: the run-store seam (``base``), its SQL implementation (``sql``, with its
statements in ``queries``), the tables, engine creation and the Alembic migrations.

``storage`` imports neither ``runtime`` nor ``api``.
"""
