"""Tests of tasks.validation: each rule of the Great Expectations suite rejects its bad rows with
its own name, valid rows pass untouched, and valid + rejected always equals the input."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from tasks.batches import Rejected
from tasks.validation import RULES, looks_like_formula, summary_table, validate_batch


def good_row(i: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source": "csv", "source_record_id": f"id{i}", "company_name": f"Salon {i}",
        "email": f"owner{i}@salon{i}.com", "email_status": "valid", "email_confidence": 90,
        "website": f"https://salon{i}.com/book", "phone": "+1 (512) 555-0100",
        "city": "Austin", "digital_maturity": 55, "booking_tools": ["vagaro"],
        "quality_score": 72, "tier": "hot", "score_breakdown": {"email_quality": 45},
    }  # fmt: skip
    row.update(overrides)
    return row


def batch(*bad: dict[str, Any], good: int = 5) -> pd.DataFrame:
    """`good` valid rows followed by the given rows."""
    return pd.DataFrame([good_row(i) for i in range(good)] + [good_row(100 + i, **b) for i, b in
                                                                enumerate(bad)])  # fmt: skip


def test_a_clean_batch_passes_whole_and_unchanged() -> None:
    df = batch(good=20)
    outcome = validate_batch(df)
    assert outcome.rejected == []
    pd.testing.assert_frame_equal(outcome.valid, df)
    assert outcome.summary["success"] is True
    assert outcome.summary["rows_valid"] == 20


@pytest.mark.parametrize(
    ("bad", "rule"),
    [
        ({"company_name": None}, "company_name_required"),
        ({"company_name": "   "}, "company_name_required"),
        ({"source": None}, "source_required"),
        ({"source_record_id": ""}, "source_record_id_required"),
        ({"email": "not-an-email"}, "email_format"),
        ({"email": "two@@signs.com"}, "email_format"),
        ({"email": "jane@nodot"}, "email_format"),
        ({"website": "salon.com"}, "website_format"),
        ({"website": "ftp://salon.com"}, "website_format"),
        ({"website": "https://salon .com"}, "website_format"),
        ({"quality_score": 101}, "quality_score_range"),
        ({"quality_score": -1}, "quality_score_range"),
        ({"quality_score": None}, "quality_score_required"),
        ({"tier": "lukewarm"}, "tier_values"),
        ({"tier": None}, "tier_required"),
        ({"email_status": "great"}, "email_status_values"),
        ({"email_confidence": 140}, "email_confidence_range"),
        ({"digital_maturity": -3}, "digital_maturity_range"),
        ({"company_name": "x" * 301}, "field_too_long"),
        ({"postal_code": "1" * 21}, "field_too_long"),
        ({"company_name": '=HYPERLINK("http://evil.example","click")'}, "formula_injection"),
        ({"address": "@SUM(A1:A9)"}, "formula_injection"),
        ({"city": "+cmd|' /C calc'!A0"}, "formula_injection"),
        ({"contact_title": "-2+3+cmd|' /C calc'!A0"}, "formula_injection"),
        ({"linkedin_url": '=HYPERLINK("http://evil.example","x")'}, "formula_injection"),
    ],
)
def test_each_rule_rejects_its_bad_row_by_name(bad: dict[str, Any], rule: str) -> None:
    df = batch(bad)
    outcome = validate_batch(df)
    assert len(outcome.rejected) == 1
    rejected = outcome.rejected[0]
    assert rejected.row_index == 5  # the bad row's own label
    assert rejected.rule == rule
    assert rejected.rules == (rule,)
    assert rejected.reason
    assert list(outcome.valid.index) == [0, 1, 2, 3, 4]
    pd.testing.assert_frame_equal(outcome.valid, df.iloc[:5])
    assert outcome.summary["rejected_by_rule"] == {rule: 1}
    failed = {e["rule"] for e in outcome.summary["expectations"] if not e["success"]}
    assert rule in failed


def test_reasons_name_the_offending_column() -> None:
    outcome = validate_batch(batch({"address": "=1+1"}, {"city": "y" * 101}, good=0))
    reasons = [r.reason for r in outcome.rejected]
    assert reasons == [
        "address starts like a spreadsheet formula (=, +, -, @)",
        "city is longer than 100 characters",
    ]


def test_phone_numbers_and_negative_looking_text_that_is_numeric_are_not_formulas() -> None:
    assert not looks_like_formula("+1 (512) 555-0100")
    assert not looks_like_formula("+44 20 7946 0958 ext. 12")
    assert not looks_like_formula("-42")
    assert not looks_like_formula("Hair & Co")
    assert looks_like_formula('=HYPERLINK("x")')
    assert looks_like_formula("+cmd|' /C calc'!A0")
    assert looks_like_formula("  @SUM(A1)")
    assert looks_like_formula("\tanything")
    assert looks_like_formula("-2+3+cmd|' /C calc'!A0")
    assert looks_like_formula('@HYPERLINK("http://evil.example")')
    assert looks_like_formula("+x\n=SUM(1)")  # the call on a later line of the cell
    # Nothing to compute: everyday text that starts with @, - or +.
    for text in ("@bellasalon_atx", "- closed Mondays", "+ great reviews (5 stars)",
                 "@Home Salon", "+Plus Fitness"):
        assert not looks_like_formula(text), text
    outcome = validate_batch(batch({"phone": "+1 512 555 0199"}, good=1))
    assert outcome.rejected == []


def test_a_record_repeated_in_its_own_dedupe_cluster_is_kept_for_the_load_to_merge() -> None:
    df = batch({"source_record_id": "idX"}, {"source_record_id": "idX"},
               {"source_record_id": "idX"}, good=3)
    df["cluster_id"] = [0, 1, 2, 3, 3, 5]  # rows 3 and 4: one business; row 5: another
    outcome = validate_batch(df)
    assert [(r.row_index, r.rule) for r in outcome.rejected] == [(5, "source_record_unique")]
    assert "as another business" in outcome.rejected[0].reason
    assert list(outcome.valid.index) == [0, 1, 2, 3, 4]


def test_duplicate_source_records_keep_the_first_and_reject_the_rest() -> None:
    df = batch({"source_record_id": "id1"}, {"source_record_id": "id1"}, good=3)
    outcome = validate_batch(df)
    assert [r.row_index for r in outcome.rejected] == [3, 4]
    assert {r.rule for r in outcome.rejected} == {"source_record_unique"}
    assert list(outcome.valid.index) == [0, 1, 2]
    unique = next(e for e in outcome.summary["expectations"] if e["rule"] == "source_record_unique")
    assert unique["success"] is False


def test_a_row_failing_several_rules_is_rejected_once_with_all_of_them() -> None:
    outcome = validate_batch(batch({"email": "bad", "tier": "tepid", "company_name": None}))
    assert len(outcome.rejected) == 1
    row = outcome.rejected[0]
    assert set(row.rules) == {"company_name_required", "email_format", "tier_values"}
    assert row.rule == row.rules[0]
    assert "email is not a valid address" in row.reason and "tier" in row.reason
    assert outcome.summary["rows_rejected"] == 1
    assert sum(outcome.summary["rejected_by_rule"].values()) == 3


def test_counts_add_up_and_labels_survive_a_non_default_index() -> None:
    df = batch({"email": "x"}, {"tier": "?"}, {"quality_score": 500}, good=7)
    df.index = [f"row-{i}" for i in range(len(df))]
    outcome = validate_batch(df)
    assert len(outcome.valid) + len(outcome.rejected) == len(df)
    assert {r.row_index for r in outcome.rejected} == {"row-7", "row-8", "row-9"}
    assert set(outcome.valid.index).isdisjoint(r.row_index for r in outcome.rejected)
    s = outcome.summary
    assert (s["rows_in"], s["rows_valid"], s["rows_rejected"]) == (10, 7, 3)


def test_a_batch_missing_a_scored_column_rejects_every_row_instead_of_crashing() -> None:
    df = batch(good=3).drop(columns=["tier"])
    outcome = validate_batch(df)
    assert len(outcome.valid) == 0
    assert [r.rule for r in outcome.rejected] == ["tier_required"] * 3


def test_optional_fields_may_be_missing_or_blank() -> None:
    df = batch({"email": None, "website": "", "email_status": None, "email_confidence": None},
               good=1)  # fmt: skip
    assert validate_batch(df).rejected == []


def test_summary_has_one_entry_per_rule_and_a_table_for_the_artifact() -> None:
    outcome = validate_batch(batch({"email": "x"}))
    s = outcome.summary
    assert set(s) == {"success", "rows_in", "rows_valid", "rows_rejected", "rejected_by_rule",
                      "expectations"}  # fmt: skip
    assert [e["rule"] for e in s["expectations"]] == [r.name for r in RULES]
    email = next(e for e in s["expectations"] if e["rule"] == "email_format")
    assert email == {"rule": "email_format", "expectation": "expect_column_values_to_match_regex",
                     "column": "email", "success": False, "unexpected_count": 1}  # fmt: skip
    table = summary_table(s)
    assert len(table) == len(RULES)
    assert {"rule": "email_format", "column": "email", "passed": False, "unexpected": 1,
            "rows_rejected": 1} in table  # fmt: skip
    json.dumps(s)


def test_rejected_rows_carry_a_json_payload_ready_for_the_quarantine() -> None:
    outcome = validate_batch(batch({"email": "x", "email_confidence": float("nan")}))
    record = outcome.rejected[0].as_quarantine()
    quarantined = Rejected(**record)
    assert quarantined.stage == "validate"
    assert quarantined.rule == "email_format"
    assert quarantined.row_ref == "id100"
    assert quarantined.payload["email"] == "x"
    assert quarantined.payload["booking_tools"] == ["vagaro"]
    assert quarantined.payload["email_confidence"] is None
    json.dumps(quarantined.payload)


def test_an_empty_batch_validates_to_nothing() -> None:
    outcome = validate_batch(batch(good=0))
    assert len(outcome.valid) == 0 and outcome.rejected == []
    assert outcome.summary["rows_in"] == 0
