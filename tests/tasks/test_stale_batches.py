"""The batch heartbeat and the sweep of batches whose run died, on PostgreSQL: which running
batches are marked failed, which are left alone, and that a chunk load stamps the heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from models import LeadBatch
from models.db import get_engine, session_scope
from tasks.batches import start_batch
from tasks.stale_batches import stale_batches, sweep_stale_batches

HOUR = 3600.0


def new_batch(url: str, run_key: str, *, heartbeat_age_s: float, started_age_s: float = 0.0,
              status: str = "running") -> int:
    """A batch as a run leaves it, its heartbeat last stamped `heartbeat_age_s` ago."""
    now = datetime.now(UTC)
    with session_scope(url) as session:
        batch_id = start_batch(session, run_key, "generate", "apollo", "salon", "TX", 10)
        session.execute(update(LeadBatch).where(LeadBatch.id == batch_id).values(
            status=status, started_at=now - timedelta(seconds=started_age_s),
            heartbeat_at=now - timedelta(seconds=heartbeat_age_s)))
    return batch_id


def get(url: str, batch_id: int) -> LeadBatch:
    with session_scope(url) as session:
        found = session.get_one(LeadBatch, batch_id)
        session.expunge(found)
        return found


def test_a_running_batch_silent_for_longer_than_the_setting_is_marked_failed_with_a_note(
    pg_clean: str,
) -> None:
    dead = new_batch(pg_clean, "dead", heartbeat_age_s=3 * HOUR, started_age_s=4 * HOUR)

    with session_scope(pg_clean) as session:
        swept = sweep_stale_batches(session, 2 * HOUR)

    assert [s.batch_id for s in swept] == [dead]
    batch = get(pg_clean, dead)
    assert batch.status == "failed"
    assert batch.finished_at is not None
    assert datetime.now(UTC) - batch.finished_at < timedelta(minutes=1)
    assert len(batch.notes) == 1
    assert batch.notes[0].startswith("run failed: marked failed at ")
    assert "LEADFLOW_BATCH_STALE_AFTER_S=7200 s" in batch.notes[0]
    with session_scope(pg_clean) as session:  # a second sweep finds nothing more to do
        assert sweep_stale_batches(session, 2 * HOUR) == []
    assert get(pg_clean, dead).notes == batch.notes


def test_a_long_batch_with_a_fresh_heartbeat_and_closed_batches_are_never_swept(
    pg_clean: str,
) -> None:
    alive = new_batch(pg_clean, "alive", heartbeat_age_s=60, started_age_s=10 * HOUR)
    done = new_batch(pg_clean, "done", heartbeat_age_s=5 * HOUR, status="done")
    failed = new_batch(pg_clean, "failed", heartbeat_age_s=5 * HOUR, status="failed")

    with session_scope(pg_clean) as session:
        assert sweep_stale_batches(session, 2 * HOUR) == []

    assert [get(pg_clean, b).status for b in (alive, done, failed)] == [
        "running", "done", "failed"]
    assert get(pg_clean, done).notes == []


def test_a_batch_whose_chunk_load_is_committing_is_left_to_its_run(pg_clean: str) -> None:
    """The sweep and a load of a batch silent until now race: the load holds the batch's row
    (it stamps the heartbeat first), so the sweep skips the batch rather than failing it."""
    from tasks.stale_batches import touch_batch

    batch_id = new_batch(pg_clean, "slow", heartbeat_age_s=3 * HOUR)
    with session_scope(pg_clean) as loading:  # a load's transaction, not committed yet
        touch_batch(loading, batch_id)
        with session_scope(pg_clean) as session:
            assert sweep_stale_batches(session, 2 * HOUR) == []
    batch = get(pg_clean, batch_id)
    assert batch.status == "running"
    assert batch.heartbeat_at is not None
    assert datetime.now(UTC) - batch.heartbeat_at < timedelta(minutes=1)


def test_a_chunk_load_and_a_reopened_run_stamp_the_heartbeat(pg_clean: str) -> None:
    from tasks.runtime import load_rows
    from tasks.steps import to_frame

    batch_id = new_batch(pg_clean, "run-1", heartbeat_age_s=3 * HOUR)
    load_rows(pg_clean, batch_id, to_frame([]), [], None, 88.0)
    with get_engine(pg_clean).connect() as conn:
        assert stale_batches(conn, 2 * HOUR) == []

    with session_scope(pg_clean) as session:  # the run's batch found again by a retried run
        session.execute(update(LeadBatch).values(
            heartbeat_at=datetime.now(UTC) - timedelta(hours=3)))
        assert start_batch(session, "run-1", "generate", "apollo", "salon", "TX", 10) == batch_id
    with get_engine(pg_clean).connect() as conn:
        assert stale_batches(conn, 2 * HOUR) == []


def test_a_retried_run_puts_its_failed_or_swept_batch_back_to_running(pg_clean: str) -> None:
    swept = new_batch(pg_clean, "run-swept", heartbeat_age_s=3 * HOUR)
    with session_scope(pg_clean) as session:
        assert [s.batch_id for s in sweep_stale_batches(session, 2 * HOUR)] == [swept]
    failed = new_batch(pg_clean, "run-failed", heartbeat_age_s=0.0, status="failed")
    with session_scope(pg_clean) as session:
        session.execute(update(LeadBatch).where(LeadBatch.id == failed)
                        .values(finished_at=datetime.now(UTC)))
    assert get(pg_clean, swept).status == "failed" and get(pg_clean, swept).finished_at
    sweep_notes = get(pg_clean, swept).notes
    assert any("marked failed" in note for note in sweep_notes)

    with session_scope(pg_clean) as session:
        for run_key, batch_id in (("run-swept", swept), ("run-failed", failed)):
            assert start_batch(session, run_key, "generate", "apollo", "salon", "TX",
                               10) == batch_id
    for batch_id in (swept, failed):
        batch = get(pg_clean, batch_id)
        assert (batch.status, batch.finished_at) == ("running", None)
    assert get(pg_clean, swept).notes == sweep_notes  # what happened before is kept


def test_the_last_sign_of_life_is_told_in_utc_whatever_the_servers_time_zone(
    pg_clean: str,
) -> None:
    """PostgreSQL hands timestamps back in the session's TimeZone (initdb sets the machine's):
    the sweep's note, `leadflow sweep-batches` and doctor say "... UTC", so they convert."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    heartbeat = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    dead = new_batch(pg_clean, "dead", heartbeat_age_s=0.0)
    with session_scope(pg_clean) as session:
        session.execute(update(LeadBatch).where(LeadBatch.id == dead)
                        .values(heartbeat_at=heartbeat))
    tokyo = create_engine(pg_clean, connect_args={"options": "-c timezone=Asia/Tokyo"})
    try:
        with tokyo.connect() as conn:
            (stale,) = stale_batches(conn, 2 * HOUR)
        with Session(tokyo) as session, session.begin():
            (swept,) = sweep_stale_batches(session, 2 * HOUR)
    finally:
        tokyo.dispose()
    said = f"{heartbeat:%Y-%m-%d %H:%M:%S}"
    assert f"{stale.last_seen:%Y-%m-%d %H:%M:%S}" == said
    assert f"{swept.last_seen:%Y-%m-%d %H:%M:%S}" == said
    assert f"no sign of life since {said} UTC" in get(pg_clean, dead).notes[-1]


def test_on_sqlite_a_sweep_waits_for_a_committing_load_and_leaves_its_batch_alone(
    sqlite_url: str,
) -> None:
    """SQLite's transactions start deferred: a sweep that read the batch as silent before a
    load stamped its heartbeat could not write after the load committed ("database is
    locked"). The sweep takes the write lock first, waits for the load, then reads."""
    import threading

    from tasks.stale_batches import touch_batch

    batch_id = new_batch(sqlite_url, "slow", heartbeat_age_s=3 * HOUR)
    stamped, release = threading.Event(), threading.Event()

    def load() -> None:  # a chunk load's transaction: heartbeat first, commit a bit later
        with session_scope(sqlite_url) as loading:
            touch_batch(loading, batch_id)
            loading.flush()
            stamped.set()
            release.wait(10)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        assert stamped.wait(10)
        threading.Timer(0.3, release.set).start()
        with session_scope(sqlite_url) as session:
            swept = sweep_stale_batches(session, 2 * HOUR)
    finally:
        release.set()
        loader.join(10)
    assert swept == []
    batch = get(sqlite_url, batch_id)
    assert batch.status == "running"
    assert batch.heartbeat_at is not None
    assert datetime.now(UTC) - _aware(batch.heartbeat_at) < timedelta(minutes=1)


def test_a_run_restarting_while_its_batch_is_swept_finds_it_running_again(db_url: str) -> None:
    """A crashed run started again (same run_key) while another run's sweep was committing:
    start_batch read its batch as running before the sweep's write, kept that status and only
    stamped the heartbeat, so the live run's batch stayed failed with a 'no sign of life'
    note. It locks the batch's row (SQLite: the write lock) and reads it as the sweep left
    it."""
    from tests.writers import writer_committing_soon

    batch_id = new_batch(db_url, "crashed", heartbeat_age_s=3 * HOUR)
    swept: list[int] = []
    sweep = writer_committing_soon(db_url, lambda s: swept.extend(
        b.batch_id for b in sweep_stale_batches(s, 2 * HOUR)))
    with sweep, session_scope(db_url) as session:
        again = start_batch(session, "crashed", "generate", "apollo", "salon", "TX", 10)
    assert swept == [batch_id]  # the sweep did mark it failed first
    assert again == batch_id
    batch = get(db_url, batch_id)
    assert any("no sign of life" in note for note in batch.notes)
    assert batch.status == "running"
    assert batch.finished_at is None


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def test_keep_alive_stamps_the_heartbeat_while_its_block_runs_and_stops_after(
    pg_clean: str,
) -> None:
    import time

    from tasks.stale_batches import keep_alive

    batch_id = new_batch(pg_clean, "slow-chunk", heartbeat_age_s=3 * HOUR)
    with keep_alive(batch_id, 0.4, pg_clean):  # a beat every 0.1 s
        time.sleep(0.6)
        with get_engine(pg_clean).connect() as conn:
            assert stale_batches(conn, 0.4) == []
    last = get(pg_clean, batch_id).heartbeat_at
    assert last is not None and datetime.now(UTC) - last < timedelta(seconds=1)
    time.sleep(0.3)
    assert get(pg_clean, batch_id).heartbeat_at == last  # the thread stopped with the block
