"""The execution layer: the workflow registry, the runner, leases, event streams and shutdown.

``runtime`` may use ``storage``, never ``api``. This package's ``__init__`` stays empty so that
importing ``service.runtime.registry`` (the ``workflow`` decorator) loads nothing else.
"""
