"""Per-node policies: how often a failing node is retried and how long it may run."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry a failing node up to ``max_attempts`` times in all.

    The delay before attempt n+1 is ``initial_delay * backoff**(n-1)``, capped at ``max_delay``;
    with ``jitter`` it is drawn uniformly from [delay/2, delay] so retries of parallel nodes
    spread out. Only exceptions that are instances of ``retry_on`` are retried.
    """

    max_attempts: int = 3
    initial_delay: float = 0.05
    backoff: float = 2.0
    max_delay: float = 5.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception,))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.backoff < 1:
            raise ValueError(
                "RetryPolicy needs initial_delay >= 0, max_delay >= 0 and backoff >= 1"
            )

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        """Whether attempt number ``attempt`` (1-based), which raised ``error``, is retried."""
        return attempt < self.max_attempts and isinstance(error, self.retry_on)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        delay = min(self.initial_delay * self.backoff ** (attempt - 1), self.max_delay)
        if self.jitter:
            delay = random.uniform(delay / 2, delay)
        return delay
