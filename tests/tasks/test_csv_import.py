"""Tests of tasks.csv_import on real fixture files (tests/fixtures/csv/): formats, encodings,
delimiters, column aliases, and every per-row and file-level rejection, plus a streamed
100,000-row file."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from tasks.batches import Rejected
from tasks.csv_import import (
    CsvFormatError,
    CsvImportReport,
    RejectedCsvRow,
    read_leads_csv,
)
from tasks.staging import CandidateLead
from tasks.validation import looks_like_formula

CSV_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "csv"


def read_all(
    name: str | Path, chunk_rows: int = 5000
) -> tuple[list[CandidateLead], list[RejectedCsvRow], CsvImportReport]:
    chunks = list(read_leads_csv(CSV_DIR / name if isinstance(name, str) else name, chunk_rows))
    leads = [lead for c in chunks for lead in c.leads]
    rejected = [r for c in chunks for r in c.rejected]
    return leads, rejected, chunks[-1].report


def test_sales_navigator_leads_export_maps_people_and_companies() -> None:
    leads, rejected, report = read_all("sales_navigator_leads.csv")
    assert report.format == "linkedin_sales_navigator_leads"
    assert report.source == "csv_linkedin"
    first = leads[0]
    assert (first.source, first.company_name, first.contact_first_name, first.contact_last_name,
            first.contact_title) == ("csv_linkedin", "Lumen Hair Studio", "Maren", "Okafor",
                                     "Owner")  # fmt: skip
    assert first.email == "maren@lumenhair.example"
    assert first.website == "https://lumenhair.example"
    assert first.linkedin_url == "https://www.linkedin.com/in/maren-okafor-fict"
    assert (first.city, first.state, first.country) == ("Austin", "Texas", "United States")
    assert first.employee_count == 11
    assert first.raw["_line"] == 2 and first.raw["Title"] == "Owner"
    assert {(r.line_number, r.rule) for r in rejected} == {
        (5, "invalid_email"), (6, "formula_injection")
    }  # fmt: skip
    assert (report.rows_read, report.accepted, report.rejected) == (5, 3, 2)


def test_sales_navigator_accounts_export_is_a_company_list() -> None:
    leads, rejected, report = read_all("sales_navigator_accounts.csv")
    assert report.format == "linkedin_sales_navigator_accounts"
    assert [lead.company_name for lead in leads] == [
        "Bright Smile Dental", "Pawsome Grooming", "Harbor Barbers"
    ]  # fmt: skip
    assert leads[1].website == "https://pawsome.example"
    assert leads[2].website is None
    assert leads[0].linkedin_url == "https://www.linkedin.com/company/bright-smile-fict"
    assert rejected == []


def test_linkedin_connections_export_skips_its_notes_and_reads_url_as_profile() -> None:
    leads, _, report = read_all("linkedin_connections.csv")
    assert report.format == "linkedin_connections"
    assert report.preamble_lines == 2
    assert leads[0].linkedin_url == "https://www.linkedin.com/in/ada-quill-fict"
    assert leads[0].website is None
    assert leads[0].company_name == "Quill Nail Bar"
    assert leads[0].contact_title == "Owner"
    assert leads[0].raw["_line"] == 5


def test_generic_companies_csv() -> None:
    leads, rejected, report = read_all("generic_companies.csv")
    assert (report.format, report.source, report.encoding) == ("generic_companies", "csv", "utf-8")
    assert len(leads) == 3 and rejected == []
    golden = leads[1]
    assert (golden.company_name, golden.website, golden.email, golden.phone, golden.address,
            golden.city, golden.state, golden.postal_code, golden.country, golden.industry) == (
        "Golden Mane Salon", "https://goldenmane.example", "hello@goldenmane.example",
        "512-555-0102", "400 Congress Ave", "Austin", "TX", "78701", "US", "Salon",
    )  # fmt: skip
    assert leads[2].email is None and leads[2].website is None


def test_a_bare_name_column_is_the_business_in_a_places_export_and_a_person_elsewhere(
        tmp_path: Path) -> None:
    places = tmp_path / "outscraper.csv"
    places.write_text("Name,Website,Phone,Address,City\n"
                      "Bella Salon,bellasalon.example,512-555-0180,1 Main St,Austin\n",
                      encoding="utf-8")
    leads, rejected, report = read_all(places)
    assert rejected == [] and report.format == "generic_companies"
    assert (leads[0].company_name, leads[0].website) == ("Bella Salon",
                                                         "https://bellasalon.example")
    people = tmp_path / "people.csv"
    people.write_text("Name,Title,Email,Company\n"
                      "Amy Chen,Owner,amy@bellasalon.example,Bella Salon\n", encoding="utf-8")
    leads, _, report = read_all(people)
    assert report.format == "generic_contacts"
    assert (leads[0].company_name, leads[0].contact_first_name) == ("Bella Salon", "Amy")


def test_renamed_columns_are_found_by_alias() -> None:
    leads, _, report = read_all("renamed_columns.csv")
    assert report.mapped_columns["company_name"] == "Business Name"
    assert report.mapped_columns["email"] == "E-mail Address"
    assert report.mapped_columns["postal_code"] == "Postcode"
    lead = leads[0]
    assert (lead.company_name, lead.website, lead.email, lead.phone, lead.address, lead.city,
            lead.industry) == ("Velvet Rose Spa", "https://www.velvetrose.example",
                               "book@velvetrose.example", "+1 512 555 0110", "77 Lamar Blvd",
                               "Austin", "Day Spa")  # fmt: skip


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter", "company"),
    [
        ("cp1252_accents.csv", "cp1252", ",", "Café Élan"),
        ("utf8_bom.csv", "utf-8-sig", ",", "Ørsted Fysio"),
        ("utf16_tab.csv", "utf-16", "\t", "Kōya Massage"),
        ("semicolon.csv", "utf-8", ";", "Zahnarzt Dr. Weiß"),
    ],
)
def test_encoding_and_delimiter_are_detected_and_reported(
    name: str, encoding: str, delimiter: str, company: str
) -> None:
    leads, rejected, report = read_all(name)
    assert (report.encoding, report.delimiter) == (encoding, delimiter)
    assert leads[0].company_name == company
    assert rejected == []
    assert report.columns[0] != "" and not report.columns[0].startswith("\ufeff")


def test_cp1252_text_keeps_its_accents_and_typographic_quotes() -> None:
    leads, _, _ = read_all("cp1252_accents.csv")
    assert leads[0].city == "Montréal"
    assert leads[1].raw["Notes"] == "\u201cTop\u201d salon"
    assert leads[0].raw["Notes"] == "Prix: 20 €"


def test_latin1_fallback_when_bytes_are_not_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"company,city\nCaf\xe9 \x81 Bar,Gen\xe8ve\n")  # 0x81 is unused in cp1252
    leads, _, report = read_all(path)
    assert report.encoding == "latin-1"
    assert leads[0].city == "Genève"


def test_a_utf8_file_with_a_cp1252_row_reads_that_row_as_cp1252_and_says_so(
        tmp_path: Path) -> None:
    path = tmp_path / "mostly_utf8.csv"
    rows = "".join(f"Café Élan {i},Genève\n" for i in range(20)).encode("utf-8")
    pasted = "Bar ’ Noir,Zürich\nCafé Élan,Zürich\n".encode("cp1252")
    path.write_bytes(b"company,city\n" + rows + pasted)
    leads, _, report = read_all(path)
    assert report.encoding == "utf-8"
    assert leads[0].company_name == "Café Élan 0"  # not "CafÃ© Ã‰lan 0" (cp1252)
    assert [(lead.company_name, lead.city) for lead in leads[-2:]] == [
        ("Bar ’ Noir", "Zürich"), ("Café Élan", "Zürich")]
    assert not any("\ufffd" in (lead.company_name + (lead.city or "")) for lead in leads)
    assert len(report.warnings) == 1 and "5 byte(s) are not valid UTF-8" in report.warnings[0]
    assert "read as cp1252" in report.warnings[0] and "warning:" in report.describe()


def test_a_missing_required_column_is_a_clear_file_level_error() -> None:
    with pytest.raises(CsvFormatError) as info:
        list(read_leads_csv(CSV_DIR / "missing_required_column.csv"))
    message = str(info.value)
    assert "'Phone', 'City', 'Notes'" in message  # what was found
    assert "company name" in message and "email" in message  # what was expected


@pytest.mark.parametrize("content", [bytes(range(256)) * 200, random.Random(7).randbytes(50_000)])
def test_a_binary_file_is_named_as_such_in_one_short_message(tmp_path: Path,
                                                              content: bytes) -> None:
    path = tmp_path / "photo.csv"
    path.write_bytes(content)
    with pytest.raises(CsvFormatError) as info:
        list(read_leads_csv(path))
    assert str(info.value) == "photo.csv looks like a binary file, not CSV"


def test_nul_bytes_in_a_small_text_file_reject_their_rows_not_the_file(tmp_path: Path) -> None:
    # A few NULs in a short export, or a tail of NULs (a crash, a preallocated download), do not
    # make a file binary: its good rows load and the NUL rows are quarantined as nul_byte.
    path = tmp_path / "nuls.csv"
    path.write_bytes(b"Company,Email\nAlpha\x00\x00,a@alpha.example\nBeta\x00\x00,b@beta.example\n"
                     b"Gamma,g@gamma.example\n")
    leads, rejected, _ = read_all(path)
    assert [lead.company_name for lead in leads] == ["Gamma"]
    assert [(r.line_number, r.rule) for r in rejected] == [(2, "nul_byte"), (3, "nul_byte")]

    padded = tmp_path / "padded.csv"
    padded.write_bytes(b"Company,Email\n" + b"".join(
        b"Co %d,c%d@co%d.example\n" % (i, i, i) for i in range(50)) + b"\x00" * 4096)
    leads, rejected, _ = read_all(padded)
    assert len(leads) == 50
    assert [r.rule for r in rejected] == ["nul_byte"]


def test_a_file_of_nul_bytes_only_is_binary(tmp_path: Path) -> None:
    path = tmp_path / "zeros.csv"
    path.write_bytes(b"\x00" * 10_000)
    with pytest.raises(CsvFormatError, match="looks like a binary file"):
        list(read_leads_csv(path))


def test_a_header_of_unknown_columns_is_listed_short(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"column number {i} " + "x" * 60 for i in range(40)) + "\n"
                    + ",".join("v" for _ in range(40)) + "\n", encoding="utf-8")
    with pytest.raises(CsvFormatError) as info:
        list(read_leads_csv(path))
    message = str(info.value)
    assert "... (40 in all)" in message and len(message) < 1500


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_an_empty_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(CsvFormatError, match="empty"):
        list(read_leads_csv(path))


def test_empty_lines_are_skipped_and_counted_not_rejected() -> None:
    leads, rejected, report = read_all("empty_lines.csv")
    assert [lead.company_name for lead in leads] == ["Alpha Nails", "Beta Brows"]
    assert [lead.raw["_line"] for lead in leads] == [3, 6]
    assert rejected == []
    assert report.empty_lines == 5
    assert report.rows_read == 2


def test_invalid_emails_reject_the_row_with_the_validator_reason() -> None:
    leads, rejected, report = read_all("invalid_emails.csv")
    assert [lead.company_name for lead in leads] == [
        "Good Email Salon", "No Email Given", "Upper Case Email"
    ]  # fmt: skip
    assert leads[2].email == "Owner@uppercase.example"  # domain normalised, local part kept
    assert [(r.line_number, r.rule) for r in rejected] == [
        (3, "invalid_email"), (4, "invalid_email"), (5, "invalid_email")
    ]  # fmt: skip
    assert "@-sign" in rejected[0].reason
    assert rejected[0].raw_row["email"] == "owner.goodemail.example"
    assert report.rejected_by_rule == {"invalid_email": 3}


def test_formula_injection_cells_reject_the_row_but_phones_and_numbers_pass() -> None:
    leads, rejected, _ = read_all("formula_injection.csv")
    # Handles, bullets and names starting with @, - or + compute nothing: they are loaded.
    assert [lead.company_name for lead in leads] == [
        "Safe Phone Co", "Negative Notes", "Handle Salon", "+Plus Fitness", "@Home Salon"]
    assert leads[0].phone == "+1 512 555 0151"
    assert [(r.line_number, r.rule) for r in rejected] == [
        (2, "formula_injection"), (4, "formula_injection"), (5, "formula_injection"),
        (6, "formula_injection"), (7, "formula_injection"),
    ]  # fmt: skip
    assert "column 'company'" in rejected[0].reason
    assert "column 'phone'" in rejected[2].reason
    # The accepted rows carry no formula anywhere, not even in their raw payload.
    for lead in leads:
        assert not any(looks_like_formula(str(v)) for v in lead.raw.values())
    assert leads[2].raw["notes"] == "@bellasalon_atx"


def test_ragged_rows_nul_bytes_and_overlong_fields_get_their_own_reasons() -> None:
    leads, rejected, report = read_all("ragged_rows.csv")
    assert [lead.company_name for lead in leads] == ["Even Row Salon", "Last Good Salon"]
    got = {r.line_number: (r.rule, r.reason) for r in rejected}
    assert got[3] == ("wrong_field_count", "line 3 has 5 fields, the header has 3")
    assert got[4] == ("wrong_field_count", "line 4 has 2 fields, the header has 3")
    assert got[5][0] == "nul_byte"
    assert got[6] == ("field_too_long", "column 'city' is 6000 characters (max 5000)")
    # Extra cells are kept in the quarantine payload; NUL is made storable.
    assert rejected[0].raw_row["_extra_1"] == "extra"
    assert "\x00" not in str(rejected[2].raw_row)
    assert report.rows_read == report.accepted + report.rejected == 6


def test_a_field_over_the_database_limit_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("company,city\n" + "S" * 301 + ",Austin\nOk Salon,Austin\n")
    leads, rejected, _ = read_all(path)
    assert [lead.company_name for lead in leads] == ["Ok Salon"]
    assert rejected[0].rule == "field_too_long"
    assert "max 300" in rejected[0].reason


def test_rows_without_a_company_use_the_business_domain_or_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "first name,last name,email\nAna,Lee,ana@brightbrows.example\nBo,Kim,bo.kim@gmail.com\n"
    )
    leads, rejected, report = read_all(path)
    assert report.format == "generic_contacts"
    assert leads[0].company_name == "brightbrows.example"
    assert [(r.line_number, r.rule) for r in rejected] == [(3, "missing_company_name")]


def test_source_record_id_is_stable_across_reimports_and_row_order(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text("company,city\nOne Salon,Austin\nTwo Spa,Dallas\n")
    b.write_text("City,Company\n\nDallas,Two Spa\nAustin,One Salon\n")
    ids_a = {lead.company_name: lead.source_record_id for lead in read_all(a)[0]}
    ids_b = {lead.company_name: lead.source_record_id for lead in read_all(b)[0]}
    assert ids_a == ids_b
    assert ids_a == {lead.company_name: lead.source_record_id for lead in read_all(a)[0]}
    assert len(set(ids_a.values())) == 2


def test_rejected_rows_become_quarantine_records() -> None:
    _, rejected, report = read_all("invalid_emails.csv")
    record = Rejected(**rejected[0].as_quarantine(report.source))
    assert (record.source, record.stage, record.rule, record.row_ref) == (
        "csv", "csv", "invalid_email", "line 3"
    )  # fmt: skip
    assert record.payload["company"] == "No At Sign"


def test_report_describes_the_import_in_one_sentence() -> None:
    *_, report = read_all("sales_navigator_leads.csv")
    text = report.describe()
    assert "5 rows read, 3 accepted, 2 rejected" in text
    assert "formula_injection: 1" in text and "linkedin_sales_navigator_leads" in text
    assert report.as_dict()["accepted"] == 3


def test_a_100k_row_file_streams_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    rows = 100_000
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Company", "Website", "Phone", "City"])
        for i in range(rows):
            if i % 1000 == 999:
                writer.writerow([f'=HYPERLINK("x{i}")', "", "", "Austin"])
            elif i % 1000 == 500:
                fh.write("\n")
                writer.writerow([f"Salon {i}", f"salon{i}.example", "512-555-0100", "Austin"])
            else:
                writer.writerow([f"Salon {i}", f"salon{i}.example", "512-555-0100", "Austin"])

    chunk_sizes: list[int] = []
    accepted = rejected = 0
    ids: set[str] = set()
    last_line = 1
    for chunk in read_leads_csv(path, chunk_rows=4096):
        chunk_sizes.append(len(chunk.leads) + len(chunk.rejected))
        accepted += len(chunk.leads)
        rejected += len(chunk.rejected)
        ids.update(lead.source_record_id for lead in chunk.leads)
        assert chunk.first_line > last_line  # chunks follow each other through the file
        last_line = chunk.last_line
        report = chunk.report

    assert max(chunk_sizes) == 4096
    assert chunk_sizes[:-1] == [4096] * (len(chunk_sizes) - 1)
    assert sum(chunk_sizes) == rows
    assert (accepted, rejected) == (99_900, 100)
    assert len(ids) == accepted  # every distinct row has its own id
    assert (report.rows_read, report.empty_lines) == (rows, 100)
    assert report.rejected_by_rule == {"formula_injection": 100}


def test_a_quote_left_open_past_the_csv_field_limit_loses_no_line(tmp_path: Path) -> None:
    # The open quote swallows the lines after it until the csv module's field limit (128 KiB)
    # stops it; those lines were neither loaded nor kept: their text must be in the quarantine.
    path = tmp_path / "open_quote.csv"
    lines = ["Company,Email", "Acme,a@acme.example", 'Beta,"b@beta.example']
    lines += [f"Co {i},c{i}@co{i}.example" for i in range(10_000)]
    path.write_text("\n".join(lines) + "\n")
    leads, rejected, report = read_all(path)
    assert [r.rule for r in rejected] == ["field_too_long"]
    assert rejected[0].line_number == 3
    kept = "".join(str(v) for r in rejected for v in r.raw_row.values())
    loaded = {lead.raw["_line"] for lead in leads}
    for number, text in enumerate(lines[2:], start=3):
        assert number in loaded or f"{text}\n" in kept, number
    assert report.accepted == len(leads)


def test_repeated_header_names_keep_every_cell(tmp_path: Path) -> None:
    # Spreadsheet exports repeat headers (two "Notes", blank names after a trailing delimiter);
    # the raw payload is header -> cell, so a repeated name overwrote the cell before it.
    path = tmp_path / "repeated_headers.csv"
    path.write_text(
        "Company,Notes,Notes,Email,,,_line\n"
        "Acme,first note,second note,a@acme.example,x,y,z\n"
        "Beta,=HYPERLINK(\"http://evil.example\"),ok,b@beta.example,,,\n"
    )
    leads, rejected, report = read_all(path)
    assert list(leads[0].raw.values()).count("first note") == 1
    assert {"second note", "x", "y", "z"} <= set(leads[0].raw.values())
    assert leads[0].raw["_line"] == 2
    assert [r.rule for r in rejected] == ["formula_injection"]
    assert '=HYPERLINK("http://evil.example")' in rejected[0].raw_row.values()
    assert "ok" in rejected[0].raw_row.values()
    assert len(report.columns) == len(set(report.columns)) == 7


def test_emails_with_a_display_name_or_mailto_load_their_address() -> None:
    # Outlook and CRM exports write "Name <address>"; copied links are "mailto:address".
    leads, rejected, _ = read_all("email_forms.csv")
    assert [(lead.company_name, lead.email) for lead in leads] == [
        ("Display Name Salon", "jo@displayname.example"),
        ("Quoted Name Spa", "ana@quotedname.example"),
        ("Angle Only Studio", "owner@angleonly.example"),
        ("Mailto Clinic", "desk@mailto.example"),
        ("Mailto Query Nails", "hello@mailtoquery.example"),
    ]
    assert leads[0].raw["email"] == "Jo Bloggs <jo@displayname.example>"
    assert [(r.line_number, r.rule) for r in rejected] == [(7, "invalid_email")]


def test_an_upper_case_scheme_is_read_and_passes_validation(tmp_path: Path) -> None:
    from tasks.steps import to_frame
    from tasks.validation import validate_batch

    path = tmp_path / "companies.csv"
    path.write_text("company_name,website\nBella Salon,HTTPS://Bella-Salon.com/Book\n")
    leads, rejected, _ = read_all(path)
    assert rejected == [] and leads[0].website == "https://Bella-Salon.com/Book"
    frame = to_frame(leads)
    frame["quality_score"], frame["tier"] = 50, "warm"
    assert validate_batch(frame).rejected == []
