"""The suppression list on PostgreSQL: addresses and whole domains, however they are written,
block every address they cover."""

from __future__ import annotations

import pytest

from models.db import session_scope
from tasks.outreach.suppression import suppress, suppressed_addresses

ADDRESSES = ["Jo@Acme.Example", " sales@acme.example ", "jo@other.example"]


@pytest.mark.parametrize("written", ["acme.example", " ACME.example ", "@acme.example",
                                     "@Acme.Example.", "acme.example."])
def test_a_domain_suppression_blocks_the_domain_however_it_is_written(pg_clean: str,
                                                                      written: str) -> None:
    with session_scope(pg_clean) as s:
        suppress(s, written, "manual", kind="domain")
    with session_scope(pg_clean) as s:
        assert suppressed_addresses(s, ADDRESSES) == {"Jo@Acme.Example", " sales@acme.example "}


@pytest.mark.parametrize("written", ["", "@", "jo@acme.example"])
def test_a_domain_suppression_that_names_no_domain_is_refused(pg_clean: str,
                                                              written: str) -> None:
    with session_scope(pg_clean) as s, pytest.raises(ValueError, match="domain"):
        suppress(s, written, "manual", kind="domain")
