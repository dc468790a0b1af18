"""The public surface of ``service.webhooks``: one sorted ``__all__`` of its modules' names."""

from __future__ import annotations

import service.webhooks
from service.webhooks import delivery, signing, urls


def test_all_is_sorted_and_without_duplicates() -> None:
    names = list(service.webhooks.__all__)
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_all_is_every_public_name_of_the_modules() -> None:
    modules = (delivery, signing, urls)
    assert set(service.webhooks.__all__) == {n for m in modules for n in m.__all__}
    for name in service.webhooks.__all__:
        assert hasattr(service.webhooks, name), name
