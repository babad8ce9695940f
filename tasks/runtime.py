"""How a process runs the tasks: the garbage collector's thresholds, and the worker process
in which chunk loads on PostgreSQL run, so that their Python never waits for the GIL of the
flow's thread (which scores, dedupes and validates the next chunk meanwhile), nor makes it wait."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import TYPE_CHECKING, Any

from leadflow.run_log import PROJECT_LOGGERS

if TYPE_CHECKING:
    import pandas as pd

    from tasks.batches import Rejected
    from tasks.load import Seen

# --- garbage collection ---------------------------------------------------------------------------

# A chunk of 10,000 leads allocates a few hundred thousand containers (candidates, rows, keys,
# query results) that live as long as a stage. With CPython's default thresholds (700, 10, 10)
# many of them survive two young collections, and every time those reach a quarter of the
# long-lived heap (imports, Great Expectations, Prefect: 0.4-0.8 million objects) a full
# collection walks all of it, holding the GIL for every thread: 0.2-0.5 s each, about one per
# chunk. A larger young generation lets the chunk's containers die before they are promoted
# (offline benchmark: full collections from 3 to 0 or 1 per 3-5 chunks).
GC_THRESHOLDS = (20_000, 20, 10)


def relax_gc() -> None:
    """Raise the collector's thresholds to at least GC_THRESHOLDS (never lowers them)."""
    gc.set_threshold(*(max(a, b) for a, b in zip(gc.get_threshold(), GC_THRESHOLDS,
                                                  strict=True)))


# --- the load -------------------------------------------------------------------------------------


def load_rows(url: str, batch_id: int | None, frame: pd.DataFrame, rejected: list[Rejected],
              seen: Seen | None, threshold: float) -> dict[str, Any]:
    """One transaction: quarantine the rejected rows and insert or merge the valid ones (the
    body of the flows' `load_chunk`), on the database at `url`."""
    from models.db import session_scope
    from tasks.batches import quarantine
    from tasks.dedupe import match_existing
    from tasks.load import load_leads
    from tasks.stale_batches import touch_batch

    _forget_other_databases(url)
    with session_scope(url) as session:
        if batch_id is not None:  # the run is alive (committed with the chunk)
            touch_batch(session, batch_id)
        # On a retry, the quarantined rows of the first attempt are already there.
        quarantined = quarantine(session, batch_id, rejected)
        result = load_leads(session, frame, batch_id,
                            rematch=partial(match_existing, threshold=threshold), seen=seen)
    return {"inserted": result.inserted, "merged": result.merged, "quarantined": quarantined,
            "rows": len(frame), "rekeyed_lead_ids": result.rekeyed_lead_ids,
            "lead_ids": sorted(set(result.lead_ids))}


_worker: ProcessPoolExecutor | None = None
_worker_lock = threading.Lock()
_in_worker = False
_worker_url: str | None = None


def _start_worker(parent_pid: int) -> None:
    global _in_worker
    _in_worker = True
    relax_gc()
    exit_with(parent_pid)
    for name in FORWARDED_LOGGERS:  # as in the flow's process (Prefect's logging level)
        logging.getLogger(name).setLevel(logging.INFO)


def exit_with(pid: int) -> None:
    """In a pool's worker process: exit as soon as process `pid` (the one that made the pool)
    is gone. A flow run's process killed outright (a cancellation past its grace period, the
    OOM killer), or ended by SIGTERM without Python's exit handlers, never tells its pools to
    stop, and their workers would wait for work for ever, the load worker with its database
    connections (a load it was running is rolled back; the run's retry or re-run loads it
    again). A pool initializer: the pool's process passes its own pid (a forkserver's
    children are not its children)."""

    def watch() -> None:
        try:
            handle = os.pidfd_open(pid)
        except ProcessLookupError:
            os._exit(1)
        except OSError:  # no pidfd (an old kernel): look every second
            while _alive(pid):
                time.sleep(1)
            os._exit(1)
        select.select([handle], [], [])  # readable once the process has ended
        os._exit(1)

    threading.Thread(target=watch, name="leadflow-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_other_databases(url: str) -> None:
    """In the worker, keep connections to the database of the latest load only (a worker
    serving many databases one after another, e.g. tests, would otherwise keep them all)."""
    global _worker_url
    if _in_worker and url != _worker_url:
        from models.db import dispose_engines

        dispose_engines()
        _worker_url = url


def pickled_for_worker(frame: pd.DataFrame) -> bytes:
    """The frame as a load in the worker receives it (`load_frame`, pickled). Prepared before
    waiting for the previous load, so that only the transfer is left between two loads."""
    from tasks.load import load_frame

    return pickle.dumps(load_frame(frame), protocol=pickle.HIGHEST_PROTOCOL)


# The project's loggers whose records a load in the worker sends back to the flow's process,
# where they reach the run's log (leadflow/run_log.py).
FORWARDED_LOGGERS = PROJECT_LOGGERS


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.getMessage()))


def _load_pickled(url: str, batch_id: int | None, frame: bytes, rejected: list[Rejected],
                  seen: Seen | None, threshold: float) -> dict[str, Any]:
    return load_rows(url, batch_id, pickle.loads(frame), rejected, seen, threshold)


def _logged(fn: Callable[..., Any], *args: Any) -> tuple[Any, list[tuple[str, int, str]]]:
    """In the worker: fn(*args) and the records the project's loggers emitted meanwhile."""
    collect = _Collect()
    loggers = [logging.getLogger(name) for name in FORWARDED_LOGGERS]
    for logger in loggers:
        logger.addHandler(collect)
    try:
        return fn(*args), collect.records
    finally:
        for logger in loggers:
            logger.removeHandler(collect)


def run_in_worker(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in the worker process (started on first use, one per process, one call at a
    time); what it logged is logged again here, so it reaches the flow run's log."""
    global _worker
    with _worker_lock:
        if _worker is None:
            # spawn, not fork: the flow's process runs threads (Prefect's, the loads').
            _worker = ProcessPoolExecutor(max_workers=1, initializer=_start_worker,
                                          initargs=(os.getpid(),),
                                          mp_context=multiprocessing.get_context("spawn"))
        worker = _worker
    try:
        result, records = worker.submit(_logged, fn, *args).result()
    except BrokenProcessPool:
        with _worker_lock:  # the worker died (killed, out of memory): the next call starts one
            if _worker is worker:
                _worker = None
        raise
    for name, level, message in records:
        logging.getLogger(name).log(level, "%s", message)
    return result


def load_in_worker(url: str, batch_id: int | None, frame: bytes, rejected: list[Rejected],
                   seen: Seen | None, threshold: float) -> dict[str, Any]:
    """`load_rows` in the worker process of a frame from `pickled_for_worker`. Everything it
    needs travels as arguments: the worker reads no settings."""
    result: dict[str, Any] = run_in_worker(_load_pickled, url, batch_id, frame, rejected,
                                           seen, threshold)
    return result
