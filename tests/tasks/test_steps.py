"""The flows' task options: which failures of a database task Prefect retries."""

from __future__ import annotations

import pytest
from prefect import flow, task
from sqlalchemy.exc import NoResultFound, OperationalError

from tasks.steps import DB_TASK
from tests.flows.conftest import prefect_server  # noqa: F401  (one Prefect server per session)

RETRIES = 2


def _attempts(error: BaseException) -> int:
    """How many times a task with the database tasks' options runs when it always raises."""
    calls = [0]

    @task(**{**DB_TASK, "retries": RETRIES, "retry_delay_seconds": 0})
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
