"""Running callables at the same instant from threads, each with its own database connection."""

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections


def run_concurrently(funcs: list[Callable[[], Any]]) -> tuple[list[Any], list[BaseException | None]]:
    """Start every function behind one barrier; return their results and exceptions, by position."""
    barrier = threading.Barrier(len(funcs))
    results: list[Any] = [None] * len(funcs)
    errors: list[BaseException | None] = [None] * len(funcs)

    def runner(i: int, fn: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = fn()
        except Exception as exc:  # collected and asserted on by the test
            errors[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(i, fn)) for i, fn in enumerate(funcs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors
