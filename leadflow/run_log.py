"""leadflow's own loggers in the flow run's log (the Prefect UI), whatever the operator sets.

Prefect sends the records of the loggers named in its one setting `PREFECT_LOGGING_EXTRA_LOGGERS`
to the run log: when it sets up logging, it copies the handlers of its `prefect.extra` logger
(the API handler, unless a custom logging.yml says otherwise) onto each of them. The setting is
a single value (environment, else profile): there is no adding to it, and naming leadflow's
loggers there, in the environment or a work pool's job variables, would replace the
operator's own list. So leadflow leaves the setting alone: each of its top-level loggers gets
one handler that passes records on to `prefect.extra`'s handlers as they are when the record
is logged, which works whether Prefect set up logging before leadflow was imported (a worker's
flow-run process) or after (the CLI, `leadflow serve`).

Prefect 3 only copies handlers onto its extra loggers: it sets no level on them, so a logger
nobody configured inherits the root's WARNING and its INFO lines (a source client's retry, a
load's summary) would never get as far as a handler. Each of leadflow's top-level loggers that
has no level of its own gets INFO; a level the operator set (a logging.yml in
PREFECT_LOGGING_SETTINGS_PATH, or code that runs first) is kept. Outside Prefect nothing
prints more for it: with no handler configured, only warnings reach Python's last resort."""

from __future__ import annotations

import logging

# The top-level packages whose modules log through `logging.getLogger(__name__)` (or a name
# below one of them, e.g. `leadflow.tracking`).
PROJECT_LOGGERS = ("tasks", "clients", "leadflow", "models", "tracking_app")


class ToPrefectExtraHandlers(logging.Handler):
    """Hands a record to the handlers of Prefect's `prefect.extra` logger, except those the
    record meets on its way up anyway (an operator who names this logger, or one below it, in
    PREFECT_LOGGING_EXTRA_LOGGERS: Prefect attached them there, once is enough)."""

    def __init__(self, owner: logging.Logger) -> None:
        super().__init__(logging.NOTSET)
        self.owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        handlers = logging.getLogger("prefect.extra").handlers
        # Those the record meets anyway: on this logger or on one between it and the record's
        # own (`tasks.outreach`, named by the operator, below `tasks`) or above.
        met = _handlers_on_the_way(logging.getLogger(record.name))
        for handler in handlers:
            if handler not in met and record.levelno >= handler.level:
                handler.handle(record)
        if not handlers and not _other_handlers(logging.getLogger(record.name)):
            # Without this handler Python would have printed the record (a warning) through
            # its last-resort handler; it must not go missing because this one is there.
            last = logging.lastResort
            if last is not None and record.levelno >= last.level:
                last.handle(record)


def _handlers_on_the_way(logger: logging.Logger | None) -> list[logging.Handler]:
    """The handlers a record of `logger` meets on its way up (as Logger.callHandlers walks)."""
    found: list[logging.Handler] = []
    while logger is not None:
        found += logger.handlers
        logger = logger.parent if logger.propagate else None
    return found


def _other_handlers(logger: logging.Logger | None) -> bool:
    """Whether a record of `logger` meets any handler but ToPrefectExtraHandlers on its way
    up (as Logger.callHandlers walks)."""
    while logger is not None:
        if any(not isinstance(h, ToPrefectExtraHandlers) for h in logger.handlers):
            return True
        logger = logger.parent if logger.propagate else None
    return False


def route_project_loggers() -> None:
    """Give each of leadflow's top-level loggers its handler (once per process), and INFO if
    it has no level of its own."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        if not any(isinstance(h, ToPrefectExtraHandlers) for h in logger.handlers):
            logger.addHandler(ToPrefectExtraHandlers(logger))
