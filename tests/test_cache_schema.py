"""The cache file's schema version: upgrades keep paid-for answers; foreign files are refused."""

from __future__ import annotations

import sqlite3

import pytest

from csc_harness.errors import UserError
from csc_harness.llm import cache as cache_module
from csc_harness.llm.cache import SCHEMA_VERSION, ResponseCache

LEGACY = """CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL,
    created REAL NOT NULL, response TEXT NOT NULL, request TEXT NOT NULL) WITHOUT ROWID"""


def legacy_file(path) -> None:
    with sqlite3.connect(path) as db:
        db.execute(LEGACY)
        db.execute("INSERT INTO responses VALUES ('k1', 'openai/j', 0, ?, '{}')",
                   ('{"text": "paid for", "prompt_tokens": 3}',))


def user_version(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]


def test_a_file_from_before_versioning_is_stamped_and_keeps_its_answers(tmp_path):
    path = tmp_path / "old.sqlite"
    legacy_file(path)
    cache = ResponseCache(path)
    try:
        assert cache.get("k1").text == "paid for"
    finally:
        cache.close()
    assert user_version(path) == SCHEMA_VERSION


def test_a_future_migration_runs_once_and_keeps_answers(tmp_path, monkeypatch):
    path = tmp_path / "c.sqlite"
    legacy_file(path)
    ResponseCache(path).close()
    monkeypatch.setattr(cache_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(cache_module.MIGRATIONS, SCHEMA_VERSION,
                        ("ALTER TABLE responses ADD COLUMN note TEXT",))
    for _ in range(2):  # the second open finds the file up to date
        cache = ResponseCache(path)
        assert cache.get("k1").text == "paid for"
        cache.close()
    assert user_version(path) == SCHEMA_VERSION + 1
    with sqlite3.connect(path) as db:  # each migration recorded once
        assert db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 2


def test_a_newer_file_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    ResponseCache(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 5,))
    with pytest.raises(UserError, match="newer csc-harness"):
        ResponseCache(path)


@pytest.mark.parametrize("make", [
    pytest.param(lambda p: p.write_bytes(b"not a database at all" * 100), id="garbage"),
    pytest.param(lambda p: sqlite3.connect(p).execute("CREATE TABLE other (x)"), id="foreign"),
    pytest.param(lambda p: p.mkdir(), id="directory"),
])
def test_unusable_cache_files_are_one_line_errors(tmp_path, make):
    path = tmp_path / "cache.sqlite"
    make(path)
    with pytest.raises(UserError) as failure:
        ResponseCache(path)
    assert "\n" not in str(failure.value) and "cache.sqlite" in str(failure.value)
