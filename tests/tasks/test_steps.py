"""The flows' task options (which failures of a database task Prefect retries), and the
stage timing of a run."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from prefect import flow, task
from sqlalchemy.exc import NoResultFound, OperationalError

from tasks.steps import DB_TASK, NETWORK_TASK
from tests.flows.conftest import prefect_server  # noqa: F401  (one Prefect server per session)

RETRIES = 2


def _attempts(error: BaseException, options: dict[str, Any] = DB_TASK) -> int:
    """How many times a task with these options (the database tasks') runs when it always
    raises."""
    calls = [0]

    @task(**{**options, "retries": RETRIES, "retry_delay_seconds": 0})
    def failing() -> None:
        calls[0] += 1
        raise error

    @flow
    def run() -> None:
        failing()

    with pytest.raises(type(error)):
        run()
    return calls[0]


@pytest.mark.usefixtures("prefect_server")
def test_a_database_task_retries_an_unreachable_database() -> None:
    assert _attempts(OperationalError("SELECT 1", {}, Exception("connection refused"))) == (
        RETRIES + 1)


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("error", [
    NoResultFound("No row was found when one was required"),
    ValueError("campaign 7: its sequence 3 has no steps"),
])
def test_a_database_task_does_not_retry_what_fails_the_same_way(error: Exception) -> None:
    assert _attempts(error) == 1


def _raised_while_stopping() -> OperationalError:
    """What a database call interrupted by Prefect's cancellation raised: the rollback of the
    interrupted query failed while the TerminationSignal was being handled."""
    import signal

    from prefect.exceptions import TerminationSignal

    try:
        try:
            raise TerminationSignal(signal=signal.SIGTERM)
        except TerminationSignal:
            raise OperationalError("ROLLBACK", {}, Exception(
                "sending query failed: another command is already in progress")) from None
    except OperationalError as exc:
        return exc


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("options", [DB_TASK, NETWORK_TASK], ids=["database", "network"])
def test_an_error_raised_while_the_run_is_being_cancelled_is_not_retried(
    options: dict[str, Any],
) -> None:
    """A retry would carry on the run its cancellation stopped (the same error alone is)."""
    assert _attempts(_raised_while_stopping(), options) == 1
    assert _attempts(OperationalError("SELECT 1", {}, Exception("server closed")),
                     options) == RETRIES + 1


def test_a_task_finishing_after_its_run_failed_records_no_stage_timing() -> None:
    """A failed run forgets its batch's timing while tasks it submitted may still be running
    in threads; what they time once they end must not bring the entry back."""
    from tasks.steps import STAGE_INTERVALS, forget_stage_timing, start_stage_timing, timed

    start_stage_timing(987_654)
    with timed(987_654, "enrich"):
        forget_stage_timing(987_654)  # the run fails while this body is still running
    with timed(987_654, "analyse"):
        pass
    with timed(None, "score"):  # a stage body called outside a flow (the benchmarks)
        pass
    assert 987_654 not in STAGE_INTERVALS and 0 not in STAGE_INTERVALS


@pytest.mark.usefixtures("prefect_server")
def test_a_cancellation_while_the_flow_waits_on_a_database_task_stops_the_flow(
    pg_url: str,
) -> None:
    """Prefect's cancellation (SIGTERM) is raised in the flow's main thread wherever it is.
    With `waited`, the database call runs in a task runner thread and the flow's thread only
    waits: the flow gets the TerminationSignal itself, and the task is not retried. (Called
    in the flow's own thread, psycopg took the signal mid-query, the rollback that followed
    failed, and the task retried that OperationalError: the cancelled run went on.)"""
    import signal
    import threading

    from prefect.exceptions import TerminationSignal
    from sqlalchemy import create_engine, text

    from tasks.steps import waited

    calls, started = [0], threading.Event()
    engine = create_engine(pg_url)

    @task(**{**DB_TASK, "retries": RETRIES, "retry_delay_seconds": 0})
    def slow_query() -> None:
        calls[0] += 1
        with engine.connect() as conn:  # as the dedupe step reads: a query, then its
            conn.execute(text("SELECT 1"))  # candidates on the driver's own cursor
            started.set()
            conn.connection.cursor().execute("SELECT pg_sleep(2)")

    @flow
    def run() -> None:
        waited(slow_query)

    def cancel() -> None:  # once the query runs, so Prefect's SIGTERM handler is in place
        if started.wait(30):
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGTERM)

    # Prefect passes the signal on to the handler it replaced once the flow has crashed:
    # here one that ignores it, never the default one, which would end pytest.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    sender = threading.Thread(target=cancel)
    try:
        sender.start()
        with pytest.raises(TerminationSignal):
            run()
    finally:
        sender.join(30)
        signal.signal(signal.SIGTERM, previous)
        engine.dispose()
    assert calls[0] == 1
