"""CSV import: streams a LinkedIn (Sales Navigator / connections) export or a generic CSV of
companies or contacts into `CandidateLead`s, in chunks, with a reason for every rejected row.

Rules and column aliases are documented in docs/csv-import.md.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from tasks.keys import registrable_domain
from tasks.staging import CandidateLead
from tasks.validation import MAX_LENGTHS, looks_like_formula

SAMPLE_BYTES = 64 * 1024
SCAN_BLOCK = 1 << 20
MAX_CELL_CHARS = 5000  # any cell, mapped or not: longer is not a field, it is a pasted blob
HEADER_SEARCH_ROWS = 10  # LinkedIn's Connections.csv starts with a few lines of notes
DELIMITERS = (",", ";", "\t", "|")
PLACEHOLDERS = frozenset({"", "-", "--", "n/a", "na", "none", "null", "nan", "#n/a"})

# Staging field -> header aliases, compared after lower-casing and collapsing punctuation to
# single spaces ("E-mail Address" -> "e mail address"). First alias present wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "company_name": ("company", "company name", "company_name", "account name", "account",
                     "business", "business name", "organization", "organisation",
                     "organization name", "employer", "current company", "name of business"),
    "website": ("website", "company website", "url", "website url", "company url", "domain",
                "company domain", "site", "web", "homepage", "web site"),
    "email": ("email", "e mail", "email address", "e mail address", "work email",
              "business email", "email 1", "mail"),
    "phone": ("phone", "telephone", "phone number", "tel", "company phone", "phone 1",
              "mobile", "mobile phone", "work phone"),
    "address": ("address", "street", "street address", "address 1", "address line 1"),
    "city": ("city", "town"),
    "state": ("state", "region", "province", "state province", "county"),
    "postal_code": ("zip", "zip code", "zipcode", "postal code", "postcode", "post code"),
    "country": ("country",),
    "industry": ("industry", "category", "company industry", "business type", "vertical"),
    "contact_first_name": ("first name", "first", "firstname", "given name"),
    "contact_last_name": ("last name", "last", "lastname", "surname", "family name"),
    "contact_title": ("title", "job title", "position", "role", "current title", "headline"),
    "linkedin_url": ("linkedin url", "profile url", "linkedin profile url", "person linkedin url",
                     "linkedin", "sales navigator url", "linkedin profile", "company linkedin url",
                     "account url", "linkedin company url"),
    "employee_count": ("employees", "employee count", "headcount", "company headcount",
                       "number of employees", "company size", "size"),
    "location": ("location", "geography", "company location", "hq location"),
    "full_name": ("name", "full name", "contact name", "contact"),
}  # fmt: skip
# Headers only LinkedIn exports use: one of them marks a file as a LinkedIn export.
LINKEDIN_MARKERS = frozenset(
    {"linkedin url", "profile url", "linkedin profile url", "person linkedin url",
     "sales navigator url", "company linkedin url", "account url", "linkedin company url",
     "connected on", "account name", "geography"}
)  # fmt: skip
# Where a staging field has a column in `leads`, its length limit; the rest share one limit.
FIELD_LIMITS: dict[str, int] = {
    **MAX_LENGTHS, "contact_first_name": 100, "contact_last_name": 100, "location": 300,
    "full_name": 200,
}  # fmt: skip


class CsvFormatError(ValueError):
    """The file cannot be imported at all (not CSV, no usable header, required column missing)."""


@dataclass(frozen=True, slots=True)
class RejectedCsvRow:
    line_number: int
    rule: str
    reason: str
    raw_row: dict[str, Any]

    def as_quarantine(self, source: str) -> dict[str, Any]:
        """Keyword arguments for tasks.batches.Rejected (a quarantined_rows row)."""
        return {
            "source": source,
            "stage": "csv",
            "rule": self.rule,
            "reason": self.reason,
            "row_ref": f"line {self.line_number}",
            "payload": self.raw_row,
        }


@dataclass(slots=True)
class CsvImportReport:
    """Running totals of one file's import; final once the last chunk has been yielded."""

    path: str
    encoding: str = ""
    delimiter: str = ","
    format: str = ""  # linkedin_sales_navigator_leads | ..._accounts | linkedin_connections |
    #                   generic_contacts | generic_companies
    source: str = "csv"
    columns: list[str] = field(default_factory=list)
    mapped_columns: dict[str, str] = field(default_factory=dict)  # staging field -> header
    ignored_columns: list[str] = field(default_factory=list)
    preamble_lines: int = 0
    rows_read: int = 0  # data rows, excluding empty lines
    empty_lines: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def describe(self) -> str:
        """One human sentence for logs and the CLI."""
        rules = ", ".join(f"{k}: {v}" for k, v in sorted(self.rejected_by_rule.items()))
        return (
            f"{Path(self.path).name}: {self.format} ({self.encoding}, "
            f"delimiter {self.delimiter!r}); {self.rows_read} rows read, {self.accepted} accepted,"
            f" {self.rejected} rejected{f' ({rules})' if rules else ''}, "
            f"{self.empty_lines} empty lines skipped"
            + "".join(f"; warning: {w}" for w in self.warnings)
        )


@dataclass(slots=True)
class CsvChunk:
    leads: list[CandidateLead]
    rejected: list[RejectedCsvRow]
    report: CsvImportReport  # the shared running report (final after the last chunk)
    first_line: int
    last_line: int


# --- encoding and dialect -------------------------------------------------------------------


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler for UTF-8 files: bytes that are not UTF-8 are read as cp1252 (a
    row pasted from a Windows spreadsheet into a UTF-8 file: "Caf\xe9" is "Café"); only the
    five bytes cp1252 leaves undefined become U+FFFD."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start : exc.end].decode("cp1252", errors="replace"), exc.end


codecs.register_error("leadflow-cp1252", _cp1252_fallback)


def decode_errors(encoding: str) -> str:
    """The `errors=` to read a file of `encoding` with (detect_encoding's answer)."""
    return "leadflow-cp1252" if encoding == "utf-8" else "replace"


def looks_binary(sample: str) -> bool:
    """Whether decoded text is a binary file's: many control characters other than tab, CR, LF
    and NUL (which no CSV export holds), or mostly NULs. A few NULs in cells (rejected per row
    as nul_byte) or a tail of them (a crash, a preallocated download) leave a file text."""
    text = sample.rstrip("\x00")
    if not text:
        return bool(sample)
    controls = sum(
        1 for c in text if (c < " " and c not in "\t\r\n\x00") or "\x7f" <= c < "\xa0"
    )
    return controls > max(2, len(text) // 100) or text.count("\x00") > len(text) // 2


def detect_encoding(path: Path) -> str:
    """The file's encoding: a BOM says so; else UTF-8 if the whole file decodes, else cp1252,
    else latin-1 (which decodes anything). Reads the file once in 1 MB blocks."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head[:4] in (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE):  # before UTF-16: same prefix
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    with path.open("rb") as fh:
        sample = fh.read(SAMPLE_BYTES)
    # UTF-16 without a BOM: every other byte of ASCII text is NUL.
    if len(sample) >= 4:
        even, odd = sample[0::2], sample[1::2]
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
            return "utf-16-be"
    if _decodes(path, "utf-8"):
        return "utf-8"
    valid, invalid = utf8_damage(path)
    if valid > invalid:
        # Mostly UTF-8 (accented names decode) with a few stray bytes: read as UTF-8 and say
        # so, rather than turning every "é" into "Ã©" by switching to cp1252.
        return "utf-8"
    if _decodes(path, "cp1252"):
        return "cp1252"
    return "latin-1"


_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


def utf8_damage(path: Path) -> tuple[int, int]:
    """(valid multi-byte UTF-8 sequences, bytes that are not valid UTF-8) in the file."""
    valid = invalid = 0
    with path.open("rb") as fh:
        while block := fh.read(SCAN_BLOCK):
            valid += len(_UTF8_MULTIBYTE.findall(block))
            invalid += block.decode("utf-8", errors="replace").count("\ufffd")
    return valid, invalid


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with path.open("rb") as fh:
            while block := fh.read(SCAN_BLOCK):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def sniff_delimiter(sample: str) -> str:
    """The delimiter that splits the first lines into the most, and most consistent, fields."""
    lines = [ln for ln in sample.splitlines()[:30] if ln.strip()]
    best, best_score = ",", (0, 0)
    for delim in DELIMITERS:
        counts = [len(row) for row in csv.reader(lines, delimiter=delim)]
        if not counts or max(counts) < 2:
            continue
        common = max(set(counts), key=counts.count)
        score = (counts.count(common), common)
        if score > best_score:
            best, best_score = delim, score
    return best


# --- header mapping -------------------------------------------------------------------------


def normalise_header(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", " ", name.replace("\ufeff", "").lower()).strip()


def unique_names(header: list[str]) -> list[str]:
    """The header with a repeated name (two "Notes", blanks after trailing delimiters), or one
    the raw payload reserves (_line, _text), followed by its column number: "Notes (3)". A row's
    raw payload is header -> cell, so a repeated name would overwrite the cell before it."""
    used = {"_line", "_text"}
    names: list[str] = []
    for number, name in enumerate(header, start=1):
        unique = name
        while unique in used:
            unique = f"{unique} ({number})"
        used.add(unique)
        names.append(unique)
    return names


def map_columns(header: list[str]) -> dict[str, int]:
    """Staging field (or location/full_name) -> column position, by alias."""
    positions = {normalise_header(h): i for i, h in reversed(list(enumerate(header)))}
    mapping: dict[str, int] = {}
    if "connected on" in positions and "url" in positions:
        # LinkedIn's Connections.csv: its bare "URL" column is the person's profile.
        mapping["linkedin_url"] = positions["url"]
    for target, aliases in ALIASES.items():
        if target in mapping:
            continue
        for alias in aliases:
            if alias in positions and positions[alias] not in mapping.values():
                mapping[target] = positions[alias]
                break
    if ("company_name" not in mapping and mapping.get("full_name") == positions.get("name")
            and ("website" in mapping or "address" in mapping)
            and not {"contact_first_name", "contact_last_name", "contact_title"} & mapping.keys()):
        # A bare "Name" beside a website or an address and no person columns names the
        # business (Google Maps and Outscraper exports: Name, Website, Phone, Address, City).
        mapping["company_name"] = mapping.pop("full_name")
    return mapping


def detect_format(header: list[str], mapping: dict[str, int]) -> tuple[str, str]:
    """(format, source) from the header."""
    names = {normalise_header(h) for h in header}
    person = bool({"contact_first_name", "contact_last_name", "full_name"} & mapping.keys())
    if names & LINKEDIN_MARKERS:
        if "connected on" in names:
            return "linkedin_connections", "csv_linkedin"
        if person:
            return "linkedin_sales_navigator_leads", "csv_linkedin"
        return "linkedin_sales_navigator_accounts", "csv_linkedin"
    return ("generic_contacts" if person else "generic_companies"), "csv"


def _is_header(row: list[str]) -> bool:
    mapping = map_columns(row)
    named = "company_name" in mapping or "email" in mapping
    return named and (len(mapping) >= 2 or len(row) == 1)


# --- rows -----------------------------------------------------------------------------------


class _RowError(Exception):
    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


def _clean(value: str) -> str | None:
    value = value.strip()
    return None if value.lower() in PLACEHOLDERS else value


def _normalise_website(value: str) -> str:
    scheme = re.match(r"^[a-z][a-z0-9+.-]*://", value, re.I)
    # The scheme in lower case, as the validation's URL rule expects ("HTTPS://x.com").
    url = (scheme.group(0).lower() + value[scheme.end():]) if scheme else f"https://{value}"
    if not re.match(r"^https?://[^\s/?#@]+\.[^\s/?#@]+(?:[/?#]\S*)?$", url, re.I):
        raise _RowError("invalid_website", f"website {value!r} is not a web address")
    return url


def _email_address(value: str) -> str:
    """The normalised address of an email cell: "Jo Bloggs <jo@x.com>" (Outlook and CRM
    exports) and "mailto:jo@x.com?subject=..." (a copied link) give "jo@x.com"."""
    if value[:7].lower() == "mailto:":
        value = value[7:].split("?", 1)[0]
    return validate_email(value, check_deliverability=False, allow_display_name=True).normalized


def _to_int(value: str | None) -> int | None:
    """'11-50' -> 11, '1,200' -> 1200; anything else -> None (kept in raw)."""
    if not value:
        return None
    match = re.match(r"^\s*(\d[\d,. ]*)", value)
    if not match:
        return None
    digits = re.sub(r"[^\d]", "", match.group(1))
    return int(digits) if digits and len(digits) < 10 else None


def _split_location(value: str) -> dict[str, str]:
    """'Austin, Texas, United States' -> city, state, country; 2 parts -> city, state."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    keys = ("city", "state", "country")[: len(parts)] if len(parts) <= 3 else ()
    if len(parts) > 3:
        return {"city": parts[0], "state": parts[-2], "country": parts[-1]}
    return dict(zip(keys, parts, strict=True))


def row_to_lead(
    cells: list[str], header: list[str], mapping: dict[str, int], source: str, line: int
) -> CandidateLead:
    """One data row as a CandidateLead, or _RowError saying why it cannot be one."""
    # Unsafe content first: a formula is rejected as such even in a misaligned row.
    for i, cell in enumerate(cells):
        name = header[i] if i < len(header) else f"extra field {i - len(header) + 1}"
        if "\x00" in cell:
            raise _RowError("nul_byte", f"column {name!r} contains a NUL byte")
        if len(cell) > MAX_CELL_CHARS:
            raise _RowError(
                "field_too_long",
                f"column {name!r} is {len(cell)} characters (max {MAX_CELL_CHARS})",
            )
        if cell and cell.strip().lower() not in PLACEHOLDERS and looks_like_formula(cell):
            raise _RowError(
                "formula_injection",
                f"column {name!r} starts like a spreadsheet formula: {cell[:40]!r}",
            )
    if len(cells) != len(header):
        raise _RowError(
            "wrong_field_count",
            f"line {line} has {len(cells)} fields, the header has {len(header)}",
        )

    values: dict[str, str] = {}
    for target, pos in mapping.items():
        value = _clean(cells[pos])
        if value is None:
            continue
        limit = FIELD_LIMITS.get(target, 300)
        if len(value) > limit:
            raise _RowError(
                "field_too_long",
                f"column {header[pos]!r} is {len(value)} characters (max {limit} for {target})",
            )
        values[target] = value

    lead: dict[str, Any] = {k: v for k, v in values.items() if k in _LEAD_TEXT_FIELDS}
    if "full_name" in values and not ({"contact_first_name", "contact_last_name"} & values.keys()):
        first, _, last = values["full_name"].partition(" ")
        lead["contact_first_name"], lead["contact_last_name"] = first, (last or None)
    if "location" in values:
        for key, part in _split_location(values["location"]).items():
            lead.setdefault(key, part)
    if "employee_count" in values:
        lead["employee_count"] = _to_int(values["employee_count"])
    if "email" in values:
        try:
            lead["email"] = _email_address(values["email"])
        except EmailNotValidError as exc:
            raise _RowError("invalid_email", f"email {values['email']!r}: {exc}") from None
    if "website" in values:
        lead["website"] = _normalise_website(values["website"])

    if not lead.get("company_name"):
        # A contacts file may lack a company: the business's own domain stands in for it.
        # (registrable_domain ignores webmail and shared hosts: gmail.com names no business.)
        domain = registrable_domain(lead.get("website") or lead.get("email"))
        if not domain:
            raise _RowError(
                "missing_company_name",
                "no company name, and no website or business email to name the company by",
            )
        lead["company_name"] = domain

    # Same content, same id: a re-import finds its earlier records instead of adding new ones.
    record_key = "\x1f".join(f"{k}={v}".lower() for k, v in sorted(lead.items()) if v is not None)
    source_record_id = hashlib.sha256(f"{source}\x1f{record_key}".encode()).hexdigest()[:32]
    raw: dict[str, Any] = dict(zip(header, cells, strict=True))
    raw["_line"] = line
    return CandidateLead(source=source, source_record_id=source_record_id, raw=raw, **lead)


_LEAD_TEXT_FIELDS = frozenset(
    {"company_name", "contact_first_name", "contact_last_name", "contact_title", "email",
     "phone", "website", "address", "city", "state", "postal_code", "country", "industry",
     "linkedin_url"}
)  # fmt: skip


def _raw_row(header: list[str], cells: list[str], line: int) -> dict[str, Any]:
    """The row as received, for the quarantine: named cells, plus any cells beyond the header."""
    raw: dict[str, Any] = {"_line": line}
    for i, cell in enumerate(cells):
        name = header[i] if i < len(header) else f"_extra_{i - len(header) + 1}"
        raw[name] = cell.replace("\x00", "\\x00")  # NUL cannot be stored in PostgreSQL text
    return raw


# --- the reader -----------------------------------------------------------------------------


def read_leads_csv(path: str | Path, chunk_rows: int = 5000) -> Iterator[CsvChunk]:
    """Stream the file as chunks of at most `chunk_rows` data rows (accepted + rejected).

    Raises CsvFormatError before yielding anything if the file cannot be imported at all.
    Always yields at least one chunk, so the caller gets the report even for an empty file."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    path = Path(path)
    if not path.is_file():
        raise CsvFormatError(f"{path} is not a file")
    report = CsvImportReport(path=str(path))
    report.encoding = detect_encoding(path)
    errors = decode_errors(report.encoding)
    if report.encoding == "utf-8" and not _decodes(path, "utf-8"):
        bad = utf8_damage(path)[1]
        report.warnings.append(
            f"{bad} byte(s) are not valid UTF-8 in an otherwise UTF-8 file; they were read as "
            "cp1252 (a row pasted from a Windows export)"
        )
    with path.open("r", encoding=report.encoding, errors=errors, newline="") as fh:
        sample = fh.read(SAMPLE_BYTES)
    if not sample.strip():
        raise CsvFormatError(f"{path.name} is empty")
    if looks_binary(sample):
        raise CsvFormatError(f"{path.name} looks like a binary file, not CSV")
    report.delimiter = sniff_delimiter(sample)

    with path.open("r", encoding=report.encoding, errors=errors, newline="") as fh:
        tap = _LineTap(fh)
        reader = csv.reader(tap, delimiter=report.delimiter)
        header, header_line = _find_header(reader, report, path.name)
        header = unique_names(header)
        mapping = map_columns(header)
        report.columns = header
        report.mapped_columns = {k: header[v] for k, v in mapping.items()}
        report.ignored_columns = [h for i, h in enumerate(header) if i not in mapping.values()]
        report.format, report.source = detect_format(header, mapping)
        yield from _chunks(reader, tap, header, mapping, report, header_line, chunk_rows)


class _LineTap:
    """The file's lines as the csv reader takes them, kept until the next record starts: a
    record the csv module cannot parse is lost to it (a quote left open swallows every line up
    to the field limit), so its text is quarantined from here."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.taken: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line


def _listed(values: list[str], limit: int = 12, width: int = 40) -> str:
    """Values for a message: at most `limit`, each cut to `width` characters."""
    shown = [repr(v if len(v) <= width else v[:width] + "...") for v in values[:limit]]
    return ", ".join(shown) + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _find_header(reader: Any, report: CsvImportReport, name: str) -> tuple[list[str], int]:
    seen: list[list[str]] = []
    last_line = 0
    while len(seen) < HEADER_SEARCH_ROWS:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise CsvFormatError(f"{name}: cannot read the header: {exc}") from None
        if not any(cell.strip() for cell in row):
            last_line = reader.line_num
            continue
        if _is_header(row):
            report.preamble_lines = len(seen)
            return [h.replace("\ufeff", "").strip() for h in row], reader.line_num
        seen.append(row)
        last_line = reader.line_num
    found = seen[0] if seen else []
    expected = "a company name column (" + ", ".join(ALIASES["company_name"][:6]) + ", ...)"
    raise CsvFormatError(
        f"{name}: no usable header in the first {HEADER_SEARCH_ROWS} lines (read up to line "
        f"{last_line}). Columns found: {_listed(found) or 'none'}. "
        f"Expected {expected} or an email column (email, e-mail, email address), "
        "plus at least one more known column (website, phone, city, first name, ...)."
    )


def _chunks(
    reader: Any,
    tap: _LineTap,
    header: list[str],
    mapping: dict[str, int],
    report: CsvImportReport,
    header_line: int,
    chunk_rows: int,
) -> Iterator[CsvChunk]:
    leads: list[CandidateLead] = []
    rejected: list[RejectedCsvRow] = []
    first_line = last_line = header_line + 1
    previous_end = header_line
    yielded = False
    while True:
        tap.taken.clear()
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The csv module recovers on the next line, so one bad row does not end the file;
            # the lines it read for the record (all of them, up to the one it stopped on) are
            # kept as text in the quarantine payload.
            line = previous_end + 1
            previous_end = reader.line_num
            report.rows_read += 1
            span = f"line {line}" if previous_end == line else f"lines {line}-{previous_end}"
            reason = f"{span} cannot be parsed as CSV: {exc}"
            if previous_end > line:
                reason += " (a quote left open?); the text of those lines is in the payload"
            rule = "field_too_long" if "field larger" in str(exc) else "malformed_row"
            text = "".join(tap.taken).replace("\x00", "\\x00")
            rejected.append(RejectedCsvRow(line, rule, reason, {"_line": line, "_text": text}))
            _count_reject(report, rule)
        else:
            line = previous_end + 1
            previous_end = reader.line_num
            if not any(cell.strip() for cell in cells):
                report.empty_lines += 1
                continue
            report.rows_read += 1
            try:
                leads.append(row_to_lead(cells, header, mapping, report.source, line))
                report.accepted += 1
            except _RowError as err:
                rejected.append(
                    RejectedCsvRow(line, err.rule, err.reason, _raw_row(header, cells, line))
                )
                _count_reject(report, err.rule)
        last_line = line
        if len(leads) + len(rejected) >= chunk_rows:
            yield CsvChunk(leads, rejected, report, first_line, last_line)
            yielded = True
            leads, rejected = [], []
            first_line = last_line + 1
    if leads or rejected or not yielded:
        yield CsvChunk(leads, rejected, report, first_line, last_line)


def _count_reject(report: CsvImportReport, rule: str) -> None:
    report.rejected += 1
    report.rejected_by_rule[rule] = report.rejected_by_rule.get(rule, 0) + 1
