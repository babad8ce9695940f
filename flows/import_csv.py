"""The CSV import flow: a LinkedIn Sales Navigator export or a generic CSV of companies or
contacts, streamed chunk by chunk through score -> dedupe -> validate -> load (chunk k's load in the
background while chunk k+1 is read, scored, deduped and validated; see `OrderedLoads`).

The same stages as flow 1 ("Generate Leads"), with the file as the source: memory stays bounded
by `chunk_rows` whatever the file size, rows the reader refuses are quarantined with their rule
(stage "csv"), and a re-import merges into the leads it made the first time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import Field

from leadflow.settings import get_settings
from tasks.batches import Rejected, failure_note, merge_validation, summary_rows
from tasks.csv_import import CsvImportReport, read_leads_csv
from tasks.stale_batches import keep_alive
from tasks.steps import (
    OrderedLoads,
    close_batch,
    dedupe_chunk,
    forget_stage_timing,
    load_chunk,
    open_batch,
    quoted,
    score_chunk,
    stage_report,
    start_stage_timing,
    timed,
    to_frame,
    validate_chunk,
    waited,
)

if TYPE_CHECKING:
    from tasks.load import Seen

BATCH_SOURCE = "csv"  # the batch's requested source; leads carry the detected one (csv_linkedin)


@flow(name="import-csv", flow_run_name="import-csv-{path}", log_prints=False)
def import_csv(
    path: str, chunk_rows: Annotated[int, Field(ge=1, le=100_000)] = 5000
) -> dict[str, Any]:
    """Import the leads of the CSV file at `path`; returns the batch summary with the CSV
    report under "csv". A file that cannot be imported at all raises CsvFormatError, after
    marking the batch failed."""
    log = get_run_logger()
    run_key = f"import:{flow_run.id}" if flow_run.id else f"import:local:{id(log)}"
    batch_id = open_batch(run_key, "import_csv", BATCH_SOURCE, None, None, None)
    validation: dict[str, Any] = {}
    rows_loaded = 0
    touched: set[int] = set()  # leads the loads created or merged into
    report: CsvImportReport | None = None

    def submit_load(frame: Any, rejected: list[Rejected], seen: Seen | None,
                    previous: Any) -> Any:
        with timed(batch_id, "load", "call"):
            # `previous` quoted: the load prepares its rows, then waits for it.
            return load_chunk.submit(batch_id, quoted(frame), quoted(rejected), seen,
                                     quoted(previous))

    def loaded(lines: tuple[int, int], outcome: dict[str, Any]) -> None:
        nonlocal rows_loaded
        rows_loaded += outcome["rows"]
        touched.update(outcome.get("lead_ids", ()))
        log.info("lines %d-%d: %d new, %d merged, %d quarantined", lines[0], lines[1],
                 outcome["inserted"], outcome["merged"], outcome["quarantined"])

    # Chunk k's load runs in the background while chunk k+1 is read, scored, deduped and
    # validated; loads stay one at a time, in file order.
    loads = OrderedLoads(submit_load, loaded)
    # The batch's heartbeat beats while the run works (tasks/stale_batches.py).
    with keep_alive(batch_id, get_settings().batch_stale_after_s):
        start_stage_timing(batch_id)  # reported when the run succeeds, else forgotten
        try:
            chunks = read_leads_csv(path, chunk_rows)
            while True:
                with timed(batch_id, "read_csv"):
                    chunk = next(chunks, None)
                if chunk is None:
                    break
                report = chunk.report
                rejected = [Rejected(**r.as_quarantine(report.source)) for r in chunk.rejected]
                if chunk.leads:
                    frame = waited(score_chunk, batch_id, quoted(to_frame(chunk.leads)))
                    frame, seen = waited(dedupe_chunk, batch_id, quoted(frame))
                    checked = waited(validate_chunk, batch_id, quoted(frame))
                    validation = merge_validation(validation, checked.summary)
                    rejected += [Rejected(**r.as_quarantine()) for r in checked.rejected]
                    valid = checked.valid
                else:
                    valid, seen = to_frame([]), None
                loads.add(valid, rejected, seen, (chunk.first_line, chunk.last_line))
            loads.wait()  # the last chunk's load, before the batch is closed
        except BaseException as exc:  # a cancellation (TerminationSignal) or Ctrl-C too
            forget_stage_timing(batch_id)
            loads.abandon()
            log.error("import of %s failed: %s", path, failure_note(exc))
            closed = close_batch(batch_id, rows_loaded, [report.source] if report else [],
                                 validation, [f"import failed: {failure_note(exc)}"],
                                 status="failed", lead_ids=touched)
            if report is not None:  # else nothing was read: the error says why
                _publish_failed(closed.as_dict(), validation, report)
            raise
    stage_seconds = stage_report(batch_id)
    assert report is not None  # read_leads_csv always yields at least one chunk

    summary = waited(close_batch, batch_id, rows_loaded, [report.source], validation,
                     [report.describe()], lead_ids=touched).as_dict()
    summary["csv"] = report.as_dict()
    summary["stage_seconds"] = stage_seconds
    _publish(summary, validation, report)
    log.info("batch %s done: %s", batch_id, report.describe())
    return summary


def _publish_failed(summary: dict[str, Any], validation: dict[str, Any],
                    report: CsvImportReport) -> None:
    """A failed import's batch on its page too: the chunks loaded before the failure stay
    loaded. The run's own error is the one to raise: an artifact that cannot be published
    (the Prefect API may be what failed) is only logged."""
    try:
        _publish(summary, validation, report, failed=True)
    except Exception as exc:  # noqa: BLE001 - the run's own error is the one to report
        get_run_logger().warning("the failed import's summary was not published: %s", exc)


def _publish(summary: dict[str, Any], validation: dict[str, Any],
             report: CsvImportReport, failed: bool = False) -> None:
    """The batch summary, the CSV report and the validation summary as one table artifact."""
    rows: list[dict[str, Any]] = [
        {"metric": "file", "value": report.path},
        {"metric": "format", "value": report.format},
        {"metric": "encoding", "value": report.encoding},
        {"metric": "delimiter", "value": repr(report.delimiter)},
        {"metric": "rows read", "value": report.rows_read},
        {"metric": "empty lines skipped", "value": report.empty_lines},
        {"metric": "rows rejected by the reader", "value": report.rejected},
        *({"metric": f"csv rule failed: {rule}", "value": n}
          for rule, n in sorted(report.rejected_by_rule.items())),
        *summary_rows(summary, validation),
    ]
    create_table_artifact(
        key="csv-import-summary",
        table=rows,
        description=(f"CSV import, batch {summary['batch_id']}"
                     f"{' (failed)' if failed else ''}: {report.describe()}"),
    )
