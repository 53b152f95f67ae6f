"""When and how long to wait before sending a request again (tenacity does the looping)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random,
)

from mikro.graphql._errors import is_retryable

__all__ = ["RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for requests that are safe to repeat.

    ``retries`` extra attempts at most; no attempt starts after ``deadline`` seconds from the first one
    (so an unreachable server fails within about the configured timeout); a server's ``Retry-After`` is
    honoured when it fits within that deadline, otherwise the error is raised at once.
    """

    retries: int = 3
    initial: float = 0.25
    maximum: float = 8.0
    jitter: float = 0.25
    deadline: float = 30.0

    def _wait(self, deadline: float) -> Callable[[RetryCallState], float]:
        backoff = wait_exponential(multiplier=self.initial, max=self.maximum) + wait_random(0, self.jitter)

        def wait(state: RetryCallState) -> float:
            delay = backoff(state)
            exc = state.outcome.exception() if state.outcome is not None else None
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                delay = max(delay, float(retry_after))
            # Never sleep past the deadline: stop_before_delay then ends the loop with the last error.
            remaining = deadline - (state.seconds_since_start or 0.0)
            return max(0.0, min(delay, remaining))

        return wait

    def _kwargs(self, spent: float = 0.0) -> dict[str, object]:
        # ``spent``: seconds the first attempt took before tenacity took over (see run_async).
        deadline = self.deadline - spent
        return {
            "stop": stop_after_attempt(self.retries + 1) | stop_before_delay(deadline),
            "wait": self._wait(deadline),
            "retry": retry_if_exception(is_retryable),
            "reraise": True,
        }

    async def run_async(self, attempt: Callable[[], Awaitable[T]], *, retry: bool) -> T:
        """Await ``attempt()``, again on retryable errors when ``retry`` (anyio.sleep, so trio works)."""
        if not retry or self.retries <= 0:
            return await attempt()
        # The first attempt outside tenacity, whose machinery costs ~5 % of the client's CPU per small
        # request (issue 17); a retryable failure hands it over as if it had made that attempt itself.
        started = time.monotonic()
        try:
            return await attempt()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            failed: Exception | None = exc

        async def again() -> T:
            nonlocal failed
            if failed is not None:
                exc, failed = failed, None
                raise exc
            return await attempt()

        spent = time.monotonic() - started
        retrying = AsyncRetrying(sleep=anyio.sleep, **self._kwargs(spent))  # type: ignore[arg-type]
        return await retrying(again)

    def run_blocking(self, attempt: Callable[[], T], *, retry: bool) -> T:
        """Call ``attempt()`` in this (worker) thread, again on retryable errors when ``retry``."""
        if not retry or self.retries <= 0:
            return attempt()
        retrying = Retrying(sleep=time.sleep, **self._kwargs())  # type: ignore[arg-type]
        return retrying(attempt)
