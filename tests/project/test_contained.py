"""ContainedFailures: a streak of failures is logged once with its traceback, counted every time,
and its end logged once, even when many threads fail and recover at the same moment."""

from __future__ import annotations

import logging
import threading

from project.contained import ContainedFailures

LOGGER = "tests.contained"


class Counter:
    def __init__(self):
        self.value = 0
        self._lock = threading.Lock()

    def inc(self) -> None:
        with self._lock:
            self.value += 1


def _records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


def test_a_streak_is_logged_once_with_its_traceback_and_its_end_once(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    counter = Counter()
    failures = ContainedFailures(
        what="Writing the thing", count=counter.inc, logger=logging.getLogger(LOGGER)
    )

    with failures:
        pass  # no streak: nothing to say
    for attempt in range(5):
        with failures:
            raise OSError(f"away #{attempt}")
    assert failures.failing and failures.failures == 5
    with failures:
        pass
    with failures:
        pass

    (warning,) = _records(caplog, logging.WARNING)
    assert warning.getMessage() == "Writing the thing failed; going on (logged again when it works)"
    assert warning.exc_info is not None and str(warning.exc_info[1]) == "away #0"
    (info,) = _records(caplog, logging.INFO)
    assert info.getMessage() == "Writing the thing works again after 5 failure(s)"
    assert counter.value == 5
    assert not failures.failing

    # A new streak is news again.
    with failures:
        raise OSError("away again")
    assert len(_records(caplog, logging.WARNING)) == 2


def test_only_exceptions_are_contained():
    failures = ContainedFailures(what="Waiting")
    try:
        with failures:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("KeyboardInterrupt was swallowed")
    assert not failures.failing


def test_caller_messages_levels_and_fields(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    failures = ContainedFailures(
        what="the layer",
        logger=logging.getLogger(LOGGER),
        failed_message="%(what)s is away (noticed by %(where)s: %(error)s)",
        failed_level=logging.ERROR,
        recovered_message="%(what)s is back after %(seconds).1f s",
    )
    assert failures.failed(ConnectionError("refused"), where="the sweeper") is True
    assert failures.failed(ConnectionError("refused"), where="the sweeper") is False
    assert failures.succeeded() is True
    assert failures.succeeded() is False

    (error,) = _records(caplog, logging.ERROR)
    assert error.getMessage() == "the layer is away (noticed by the sweeper: refused)"
    (info,) = _records(caplog, logging.INFO)
    assert info.getMessage().startswith("the layer is back after 0.")


def test_threads_failing_and_recovering_together_log_each_streak_once(caplog):
    """Many threads hit the same failure at once (the cache goes away under every capture worker),
    then all succeed at once: one warning, one recovery, every failure counted."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    counter = Counter()
    failures = ContainedFailures(
        what="The shared write", count=counter.inc, logger=logging.getLogger(LOGGER)
    )
    threads_count, rounds = 8, 3
    per_thread_failures = 200
    barrier = threading.Barrier(threads_count)

    def work() -> None:
        for _ in range(rounds):
            barrier.wait()
            for _ in range(per_thread_failures):
                with failures:
                    raise OSError("the cache is away")
            barrier.wait()  # every thread has failed before any succeeds
            for _ in range(50):
                with failures:
                    pass

    threads = [threading.Thread(target=work) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()

    warnings = _records(caplog, logging.WARNING)
    recoveries = _records(caplog, logging.INFO)
    assert len(warnings) == rounds
    assert len(recoveries) == rounds
    expected = threads_count * per_thread_failures
    assert [r.getMessage() for r in recoveries] == [
        f"The shared write works again after {expected} failure(s)"
    ] * rounds
    assert counter.value == rounds * expected
    assert not failures.failing
