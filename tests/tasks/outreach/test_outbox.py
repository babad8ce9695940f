"""The outbox folder: one .eml per Message-ID, written whole, never twice."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default as default_policy

import pytest

from tasks.outreach.outbox import eml_name, write_eml

MESSAGE = (b"Message-ID: <lf.1.2.1.ab@sender.example>\r\nFrom: a@sender.example\r\n"
           b"To: b@dest.example\r\nSubject: hi\r\n\r\nbody\r\n")


def test_writes_a_parsable_eml_named_after_the_message_id(tmp_path):
    path, new = write_eml(tmp_path / "out", "<lf.1.2.1.ab@sender.example>", MESSAGE)
    assert new and path.name == "lf.1.2.1.ab@sender.example.eml"
    msg = message_from_bytes(path.read_bytes(), policy=default_policy)
    assert msg["Message-ID"] == "<lf.1.2.1.ab@sender.example>"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_a_second_write_of_the_same_message_id_changes_nothing(tmp_path):
    write_eml(tmp_path, "<x@y>", MESSAGE)
    path, new = write_eml(tmp_path, "<x@y>", b"something else")
    assert not new and path.read_bytes() == MESSAGE


def test_names_cannot_escape_the_folder():
    assert eml_name("<../../etc/passwd@x>") == "_.._etc_passwd@x.eml"
    assert "/" not in eml_name("<a/b\\c@d>")
    with pytest.raises(ValueError):
        eml_name("<>")
