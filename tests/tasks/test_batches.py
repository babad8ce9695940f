"""What a failed run's batch note says stopped it."""

from __future__ import annotations

import signal

from prefect.exceptions import TerminationSignal
from sqlalchemy.exc import OperationalError

from tasks.batches import failure_note


def test_the_note_names_the_signal_that_stopped_the_run_however_it_came_out() -> None:
    """Prefect's cancellation raised mid-query comes out as the failed rollback's error: the
    note names the signal, not the rollback."""
    stopped = "stopped by SIGTERM (the run was cancelled or its process ended)"
    assert failure_note(TerminationSignal(signal=signal.SIGTERM)) == stopped
    try:
        try:
            raise TerminationSignal(signal=signal.SIGTERM)
        except TerminationSignal:
            raise OperationalError("ROLLBACK", {}, Exception("another command is already "
                                                             "in progress")) from None
    except OperationalError as exc:
        assert exc.__cause__ is None and exc.__suppress_context__
        assert failure_note(exc) == stopped
    assert failure_note(KeyboardInterrupt()) == "stopped (KeyboardInterrupt)"
    assert failure_note(ValueError("no column company")) == "no column company"
    assert "server closed" in failure_note(
        OperationalError("SELECT 1", {}, Exception("server closed")))
