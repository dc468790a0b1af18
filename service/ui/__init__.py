"""The browser side of the service: the dashboard at ``/ui`` and Swagger UI at ``/docs``.

Both are offline: every script, style and image ships inside the installed packages.
"""
