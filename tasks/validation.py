"""Batch validation before load: a Great Expectations suite splits a scored batch into the rows
that may be loaded and the rows to quarantine, each with the rule(s) it failed.

Great Expectations is imported lazily (it costs seconds) and its context and suite are built
once per process, so validating a 10,000-row batch costs tens of milliseconds.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = ("company_name", "source", "source_record_id")
TIERS: tuple[str, ...] = ("hot", "warm", "cold")
EMAIL_STATUSES: tuple[str, ...] = (
    "valid", "invalid", "accept_all", "webmail", "disposable", "unknown",
)  # fmt: skip

# A syntactic check only (one @, a dotted domain, no spaces); deliverability is enrichment's job.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[A-Za-z0-9-]{2,}$"
# An absolute http(s) URL with a dotted host and no whitespace.
URL_PATTERN = r"^https?://[^\s/?#@]+\.[^\s/?#@]+(?:[/?#]\S*)?$"
# Spreadsheet formula injection (OWASP "CSV injection"): a cell a spreadsheet would evaluate to
# something harmful. `=` (after blanks), a leading tab or CR: always. A leading `+`, `-` or `@`
# only with a function call (`@SUM(`, `+HYPERLINK(`) or a DDE pipe (`+cmd|' /C calc'!A0`)
# after it: without one a spreadsheet computes nothing from it, and handles (`@bellasalon`),
# bullets (`- closed Mondays`), names (`+Plus Fitness`) and phone numbers are everyday text.
FORMULA_PATTERN = r"^\s*=|^[\t\r]|^\s*[+\-@].*?(?:[A-Za-z_][\w.]*\(|\|)"
_FORMULA_RE = re.compile(FORMULA_PATTERN, re.IGNORECASE | re.DOTALL)
_FORMULA_STARTS = frozenset("=@+-")

# Longest value each column of `leads` holds (models/leads.py); longer values would fail the load.
MAX_LENGTHS: dict[str, int] = {
    "company_name": 300, "contact_title": 200, "email": 320, "phone": 50, "website": 500,
    "address": 300, "city": 100, "state": 100, "postal_code": 20, "country": 100,
    "industry": 100, "linkedin_url": 500, "source": 40, "source_record_id": 200,
}  # fmt: skip
# Text a person will read or export: never let a formula through.
TEXT_COLUMNS: tuple[str, ...] = (
    "company_name", "contact_first_name", "contact_last_name", "contact_title", "email",
    "phone", "website", "address", "city", "state", "postal_code", "country", "industry",
    "linkedin_url",
)  # fmt: skip


def looks_like_formula(value: str) -> bool:
    """True if a spreadsheet would treat the cell as a formula (e.g. '=HYPERLINK(...)')."""
    return bool(_FORMULA_RE.match(value))


@dataclass(frozen=True, slots=True)
class Rule:
    """One expectation of the suite, with the name quarantined rows carry and a readable reason."""

    name: str
    expectation: str  # Great Expectations class name in great_expectations.expectations
    kwargs: dict[str, Any]
    reason: str


OVERLONG_FIELD = "overlong_field"
FORMULA_FIELD = "formula_field"
RECORD_FIELD = "source_record"  # derived: (source, source_record_id) for the uniqueness rule


def _rules() -> list[Rule]:
    rules = [
        Rule(f"{col}_required", "ExpectColumnValuesToNotBeNull", {"column": col},
             f"{col} is missing")
        for col in REQUIRED_COLUMNS
    ]  # fmt: skip
    rules += [
        Rule("email_format", "ExpectColumnValuesToMatchRegex",
             {"column": "email", "regex": EMAIL_PATTERN}, "email is not a valid address"),
        Rule("website_format", "ExpectColumnValuesToMatchRegex",
             {"column": "website", "regex": URL_PATTERN}, "website is not an http(s) URL"),
        Rule("quality_score_required", "ExpectColumnValuesToNotBeNull",
             {"column": "quality_score"}, "quality_score is missing (batch not scored?)"),
        Rule("quality_score_range", "ExpectColumnValuesToBeBetween",
             {"column": "quality_score", "min_value": 0, "max_value": 100},
             "quality_score is outside 0-100"),
        Rule("tier_values", "ExpectColumnValuesToBeInSet",
             {"column": "tier", "value_set": list(TIERS)}, "tier is not hot, warm or cold"),
        Rule("tier_required", "ExpectColumnValuesToNotBeNull", {"column": "tier"},
             "tier is missing (batch not scored?)"),
        Rule("email_status_values", "ExpectColumnValuesToBeInSet",
             {"column": "email_status", "value_set": list(EMAIL_STATUSES)},
             "email_status is not a known verification status"),
        Rule("email_confidence_range", "ExpectColumnValuesToBeBetween",
             {"column": "email_confidence", "min_value": 0, "max_value": 100},
             "email_confidence is outside 0-100"),
        Rule("digital_maturity_range", "ExpectColumnValuesToBeBetween",
             {"column": "digital_maturity", "min_value": 0, "max_value": 100},
             "digital_maturity is outside 0-100"),
        Rule("source_record_unique", "ExpectColumnValuesToBeUnique", {"column": RECORD_FIELD},
             "(source, source_record_id) repeats an earlier row of this batch, as another "
             "business"),
    ]  # fmt: skip
    # Per-column length and formula checks are folded into two derived columns (the first
    # offending column's name, or null): GX costs ~10 ms per expectation whatever the batch
    # size, so 27 per-column expectations would triple the validation time.
    rules += [
        Rule("field_too_long", "ExpectColumnValuesToBeNull", {"column": OVERLONG_FIELD},
             "{value} is longer than {limit} characters"),
        Rule("formula_injection", "ExpectColumnValuesToBeNull", {"column": FORMULA_FIELD},
             "{value} starts like a spreadsheet formula (=, +, -, @)"),
    ]  # fmt: skip
    return rules


RULES: tuple[Rule, ...] = tuple(_rules())
NUMERIC_CHECKED = ("quality_score", "email_confidence", "digital_maturity")
TEXT_CHECKED: tuple[str, ...] = tuple(
    dict.fromkeys(
        [*REQUIRED_COLUMNS, "email", "website", "tier", "email_status", *MAX_LENGTHS, *TEXT_COLUMNS]
    )
)


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that failed one or more rules; `rule` is the first, `reason` names them all."""

    row_index: Any  # the row's label in the input DataFrame
    rule: str
    reason: str
    rules: tuple[str, ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)

    def as_quarantine(self, stage: str = "validate") -> dict[str, Any]:
        """Keyword arguments for tasks.batches.Rejected (a quarantined_rows row)."""
        return {
            "source": str(self.payload.get("source") or "unknown"),
            "stage": stage,
            "rule": self.rule,
            "reason": self.reason,
            "row_ref": str(self.payload.get("source_record_id") or self.row_index),
            "payload": self.payload,
        }


@dataclass(slots=True)
class ValidationOutcome:
    valid: pd.DataFrame  # the rows that passed, unchanged, in input order
    rejected: list[RejectedRow]
    summary: dict[str, Any]


class ValidationError(RuntimeError):
    """An expectation could not be evaluated: the batch is neither passed nor rejected."""


class _Suite:
    """The GX batch definition and suite, built once per process."""

    def __init__(self) -> None:
        import great_expectations as gx
        import great_expectations.expectations as gxe

        # GX logs routine set-up (e.g. its ephemeral docs directory) at INFO; keep warnings.
        # Set after the import, which gives some of GX's loggers their own level.
        for name in ("great_expectations", "great_expectations.data_context.types.base"):
            logging.getLogger(name).setLevel(logging.WARNING)

        context = gx.get_context(mode="ephemeral")
        try:  # No progress bars in logs; the attribute moved between 1.x releases.
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context.variables.progress_bars = ProgressBarsConfig(globally=False)
        except Exception:  # pragma: no cover - cosmetic only
            pass
        asset = context.data_sources.add_pandas("leadflow").add_dataframe_asset("lead_batch")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole_batch")
        suite = gx.ExpectationSuite(name="lead_batch_before_load")
        for i, rule in enumerate(RULES):
            # meta carries our rule back in each result (GX assigns ids only once added).
            expectation = getattr(gxe, rule.expectation)(**rule.kwargs, meta={"rule_index": i})
            suite.add_expectation(expectation)
        self.suite = context.suites.add(suite)
        # A batch definition is not safe to use from two threads at once.
        self.lock = threading.Lock()

    def run(self, frame: pd.DataFrame) -> Any:
        """The suite's results. A batch that passes every rule (the usual case) is validated
        once with BOOLEAN_ONLY results, which skips collecting the unexpected rows (a third
        of GX's time); otherwise the suite runs again with COMPLETE results, which list the
        failing rows' positions."""
        with self.lock:
            batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
            quick = batch.validate(self.suite, result_format={"result_format": "BOOLEAN_ONLY"})
            if quick.success:
                return quick
            return batch.validate(
                self.suite,
                result_format={
                    "result_format": "COMPLETE",
                    "partial_unexpected_count": 0,
                    "return_unexpected_index_query": False,
                },
            )


_suite: _Suite | None = None
_suite_lock = threading.Lock()


def _get_suite() -> _Suite:
    global _suite
    with _suite_lock:
        if _suite is None:
            _suite = _Suite()
        return _suite


# The columns the suite's expectations read (the others only feed the derived columns).
SUITE_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(
    c for rule in RULES for c in (rule.kwargs.get("column"), *rule.kwargs.get("column_list", ()))
    if c
))
# A value a spreadsheet may read as a formula starts (after blanks) with = @ + -, or with a tab
# or CR: searched once over a whole column, each value after a NUL, so that only a column
# holding such a value is checked value by value (the per-value test below decides).
_FORMULA_CANDIDATE = re.compile(r"\x00(?:\s*[=@+\-]|[\t\r])")


def _texts(df: pd.DataFrame, col: str, n: int) -> list[str | None]:
    """A column as text, blanks and missing values as None."""
    if col not in df.columns:
        return [None] * n
    values = df[col]
    missing = values.isna().to_numpy(dtype=bool).tolist()
    return [(v if v.strip() else None) if type(v) is str
            else None if m else (s if (s := str(v)).strip() else None)
            for v, m in zip(values.tolist(), missing, strict=True)]


def _strings(df: pd.DataFrame, col: str) -> list[str] | None:
    """The column's present values when every one of them is a str (the usual case), else
    None: a cheap view for the checks below, which only need to rule a column out."""
    if col not in df.columns:
        return []
    values = df[col]
    present = values[values.notna()].tolist()
    strings = [v for v in present if type(v) is str]
    return strings if len(strings) == len(present) else None


def _checked_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The columns the suite reads, positionally indexed, blanks as missing, numbers as numbers,
    plus the two derived columns naming a row's first over-long and first formula-like field.

    A column the batch lacks is all-missing, so its not-null rule rejects rows rather than
    the validation crashing."""
    n = len(df)
    texts = {col: _texts(df, col, n) for col in TEXT_CHECKED if col in SUITE_COLUMNS}
    data: dict[str, Any] = {}
    for col, text in texts.items():
        column = np.empty(n, dtype=object)
        column[:] = text
        data[col] = column
    for col in NUMERIC_CHECKED:
        values = df[col] if col in df.columns else pd.Series([None] * n, index=df.index)
        data[col] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    # The first offending column of each row, in column order. A column is looked at value by
    # value only when it may hold an offender: its longest string is over the limit, it
    # holds a formula candidate, or it holds something other than strings.
    overlong = np.full(n, None, dtype=object)
    for col, limit in MAX_LENGTHS.items():
        strings = _strings(df, col) if col not in texts else [t for t in texts[col] if t]
        if strings is not None and (not strings or max(map(len, strings)) <= limit):
            continue
        text = texts.get(col) or _texts(df, col, n)
        for pos, t in enumerate(text):
            if t is not None and len(t) > limit and overlong[pos] is None:
                overlong[pos] = col
    formula = np.full(n, None, dtype=object)
    match = _FORMULA_RE.match
    for col in TEXT_COLUMNS:
        strings = _strings(df, col) if col not in texts else [t for t in texts[col] if t]
        if strings is not None and not _FORMULA_CANDIDATE.search("\x00" + "\x00".join(strings)):
            continue
        text = texts.get(col) or _texts(df, col, n)
        for pos, t in enumerate(text):
            # Only a cell starting (after blanks) with = @ + - or a tab/CR can be a formula.
            if (t is not None and formula[pos] is None
                    and (t.lstrip()[:1] in _FORMULA_STARTS or t[:1] in "\t\r") and match(t)):
                formula[pos] = col
    data[OVERLONG_FIELD] = overlong
    data[FORMULA_FIELD] = formula
    data[RECORD_FIELD] = _record_keys(df, n, texts)
    return pd.DataFrame(data, index=pd.RangeIndex(n))


def _record_keys(df: pd.DataFrame, n: int, texts: dict[str, list[str | None]]) -> np.ndarray:
    """Each row's (source, source_record_id) as one value for the uniqueness rule, or None
    where it cannot repeat anything: the pair is missing (the required rules say so), or the
    row repeats an earlier row's record in the same dedupe cluster (the same record seen twice
    in a batch: the load merges the two and stores the record once). A record repeated in
    another cluster keeps its value, and the rule rejects it."""
    sources = texts.get("source") or _texts(df, "source", n)
    ids = texts.get("source_record_id") or _texts(df, "source_record_id", n)
    clusters = (df["cluster_id"].tolist() if "cluster_id" in df.columns
                else [None] * n)
    first_cluster: dict[str, Any] = {}
    out = np.full(n, None, dtype=object)
    for pos, (source, record, cluster) in enumerate(zip(sources, ids, clusters, strict=True)):
        if source is None or record is None:
            continue
        key = f"{source}\x1f{record}"
        if key not in first_cluster:
            first_cluster[key] = cluster
        elif cluster is not None and first_cluster[key] == cluster:
            continue
        out[pos] = key
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _reason(rule: Rule, frame: pd.DataFrame, pos: int) -> str:
    """The rule's reason; for the derived checks, naming the offending column."""
    if "{value}" not in rule.reason:
        return rule.reason
    column = str(frame.at[pos, rule.kwargs["column"]])
    return rule.reason.format(value=column, limit=MAX_LENGTHS.get(column, "?"))


def validate_batch(df: pd.DataFrame) -> ValidationOutcome:
    """Run the suite over a scored batch; split it into valid rows and rejected rows.

    valid + rejected always equals the input (nothing is lost). Of rows sharing a
    (source, source_record_id), the first is kept and the later ones are rejected."""
    frame = _checked_frame(df)
    suite = _get_suite()
    result = suite.run(frame) if len(frame) else None

    failed: dict[int, list[Rule]] = {}
    expectations: list[dict[str, Any]] = []
    for res in result.results if result is not None else []:
        rule = RULES[int(res.expectation_config.meta["rule_index"])]
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise ValidationError(
                f"rule {rule.name} could not run: {res.exception_info.get('exception_message')}"
            )
        positions = list(res.result.get("unexpected_index_list") or [])
        if rule.name == "source_record_unique" and positions:
            # GX flags every member of a duplicate group; keep the first occurrence.
            keys = frame[RECORD_FIELD]
            dupes = (keys.duplicated(keep="first") & keys.notna()).to_numpy()
            positions = [p for p in positions if dupes[p]]
        for pos in positions:
            failed.setdefault(int(pos), []).append(rule)
        expectations.append(
            {
                "rule": rule.name,
                "expectation": res.expectation_config.type,
                "column": rule.kwargs.get("column") or ",".join(rule.kwargs.get("column_list", [])),
                "success": bool(res.success),
                "unexpected_count": int(res.result.get("unexpected_count") or 0),
            }
        )

    rejected: list[RejectedRow] = []
    reject_mask = np.zeros(len(df), dtype=bool)
    if failed:
        bad_positions = sorted(failed)
        reject_mask[bad_positions] = True
        records = df.iloc[bad_positions].to_dict("records")
        for pos, record in zip(bad_positions, records, strict=True):
            rules = failed[pos]
            reasons = "; ".join(dict.fromkeys(_reason(r, frame, pos) for r in rules))
            rejected.append(
                RejectedRow(
                    row_index=_json_safe(df.index[pos]),
                    rule=rules[0].name,
                    reason=reasons,
                    rules=tuple(dict.fromkeys(r.name for r in rules)),
                    payload=_json_safe(record),
                )
            )

    by_rule: dict[str, int] = {}
    for row in rejected:
        for name in row.rules:
            by_rule[name] = by_rule.get(name, 0) + 1
    summary = {
        "success": not rejected,
        "rows_in": len(df),
        "rows_valid": int(len(df) - reject_mask.sum()),
        "rows_rejected": len(rejected),
        "rejected_by_rule": dict(sorted(by_rule.items())),
        "expectations": expectations,
    }
    return ValidationOutcome(valid=df[~reject_mask], rejected=rejected, summary=summary)


def summary_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary as rows for a Prefect table artifact: one row per rule that ran."""
    return [
        {
            "rule": e["rule"],
            "column": e["column"],
            "passed": e["success"],
            "unexpected": e["unexpected_count"],
            "rows_rejected": summary["rejected_by_rule"].get(e["rule"], 0),
        }
        for e in summary["expectations"]
    ]


def run_table(validation: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole run's validation totals (tasks.batches.merge_validation) as artifact rows: every
    rule of the suite with the rows it sent to quarantine."""
    failed = validation.get("rejected_by_rule", {})
    return [
        {"rule": rule.name, "expectation": rule.expectation,
         "rows_quarantined": failed.get(rule.name, 0), "meaning": rule.reason}
        for rule in RULES
    ]
