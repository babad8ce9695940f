"""The engine's JSON reads on PostgreSQL: orjson, with integers beyond 64 bits kept exact."""

from __future__ import annotations

from sqlalchemy import text

from models.db import get_engine


def test_json_values_read_back_exactly_including_integers_beyond_64_bits(pg_clean: str) -> None:
    with get_engine(pg_clean).connect() as conn:
        row = conn.execute(text(
            "SELECT CAST(:a AS jsonb), CAST(:b AS json), CAST(:c AS jsonb)"
        ), {"a": '{"tools": ["calendly"], "n": 3, "x": 1.5, "u": "\\u00e9"}',
            "b": '[12345678901234567890123, "phone 1234567890123456789"]',
            "c": "null"}).one()
    assert row[0] == {"tools": ["calendly"], "n": 3, "x": 1.5, "u": "é"}
    assert row[1] == [12345678901234567890123, "phone 1234567890123456789"]
    assert isinstance(row[1][0], int)
    assert row[2] is None
