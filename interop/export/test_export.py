"""`agentcap export` read back by other tools: Parquet with Python's DuckDB and pyarrow, JSON Lines with json, HAR
with a HAR 1.2 JSON schema (written in this directory from the public format description), haralyzer, and
Playwright's HAR replay in headless Chromium (skipped when the system has no Chromium).

The traffic is real: the twin (`agentcap sim`), the recording proxy in front of it, requests sent with urllib.
The live exports go through the proxy's admin listener while it runs; the others read the closed file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import jsonschema
import pyarrow.parquet as pq
import pytest
from haralyzer import HarEntry

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "interop" / "support"))
from procs import ADMIN_RE, Proc, agentcap  # noqa: E402
TABLES = ["exchanges", "sse_events", "entries", "conversations", "agents", "usage"]


def call(base: str, method: str, path: str, body: bytes | None = None, ctype: str = "application/json") -> int:
    req = urllib.request.Request(base + path, data=body, method=method,
                                 headers={"authorization": "Bearer sk-export-test", "content-type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


def run(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([agentcap(), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr + out.stdout
    return out


def db_count(db: Path, table: str) -> int:
    out = run("query", "--db", str(db), "--format", "json", f"SELECT count(*) AS n FROM {table}")
    return json.loads(out.stdout)[0]["n"]


def db_columns(db: Path, table: str) -> list[str]:
    out = run("query", "--db", str(db), "--format", "json", "--param", table,
              "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position")
    return [r["column_name"] for r in json.loads(out.stdout)]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A recording with streamed and plain turns, an agent, a listing and a binary body; the proxy still
    running (its admin URL in `admin`) until `close()`."""
    work = tmp_path_factory.mktemp("export")
    db = work / "rec.duckdb"
    twin = Proc([agentcap(), "sim", "--listen", "127.0.0.1:0", "--exit-on-stdin-close"])
    proxy = Proc([agentcap(), "proxy", "--listen", "127.0.0.1:0", "--upstream", twin.url, "--db", str(db),
                  "--admin-listen", "127.0.0.1:0", "--exit-on-stdin-close"])
    admin = ADMIN_RE.search(proxy.line).group(1)
    base = proxy.url
    assert call(base, "POST", "/v1/agents", json.dumps({"model": "mistral-medium-latest", "name": "exporter"}).encode()) == 200
    for i in range(4):
        body = {"model": "mistral-medium-latest", "inputs": f"hello {i}", "stream": i % 2 == 0}
        assert call(base, "POST", "/v1/conversations", json.dumps(body).encode()) == 200
    assert call(base, "GET", "/v1/agents?page=0&page_size=5") == 200
    call(base, "POST", "/v1/conversations", bytes([0xFF, 0xFE, 0x00, 0x80]), "application/octet-stream")
    flush = urllib.request.Request(admin + "/flush", data=b"{}", method="POST",
                                   headers={"content-type": "application/json"})
    urllib.request.urlopen(flush, timeout=60).read()

    class R:
        pass

    r = R()
    r.work, r.db, r.admin = work, db, admin

    def close():
        proxy.stop()
        twin.stop()
        r.admin = None

    r.close = close
    yield r
    close()


def test_a_live_export_goes_through_the_admin_listener(recording):
    out = recording.work / "live-pq"
    res = run("export", "--admin", recording.admin, "--db", str(recording.db), "--format", "parquet", "--out", str(out))
    assert "via the proxy" in res.stderr, res.stderr
    har = recording.work / "live.har"
    run("export", "--admin", recording.admin, "--format", "har", "--out", str(har))
    entries = json.loads(har.read_text())["log"]["entries"]
    files = {t: pq.read_table(out / f"{t}.parquet").num_rows for t in TABLES}
    assert files["exchanges"] == len(entries) >= 7
    assert files["sse_events"] > 0 and files["agents"] >= 1


def test_parquet_reads_back_in_duckdb_and_pyarrow_with_the_files_row_counts(recording):
    recording.close()
    out = recording.work / "pq"
    res = run("export", "--db", str(recording.db), "--format", "parquet", "--out", str(out))
    assert "opened read-only" in res.stderr, res.stderr
    con = duckdb.connect()
    for t in TABLES:
        f = out / f"{t}.parquet"
        want = db_count(recording.db, t)
        assert con.execute("SELECT count(*) FROM read_parquet(?)", [str(f)]).fetchone()[0] == want, t
        table = pq.read_table(f)
        assert table.num_rows == want, t
        assert table.column_names == db_columns(recording.db, t), t
    assert db_count(recording.db, "exchanges") >= 7
    # Types survive: timestamps stay timestamps, counts stay integers.
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))",
                             [str(out / "exchanges.parquet")]).fetchall())
    assert types["started_at"].startswith("TIMESTAMP"), types
    assert types["response_bytes"] == "BIGINT" and types["status"] == "INTEGER", types


def test_jsonl_rows_parse_and_count_like_the_file(recording):
    recording.close()
    out = recording.work / "jl"
    run("export", "--db", str(recording.db), "--format", "jsonl", "--out", str(out))
    for t in TABLES:
        lines = (out / f"{t}.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        assert all(isinstance(r, dict) for r in rows)
        assert len(rows) == db_count(recording.db, t), t


def test_since_until_and_where_narrow_the_export(recording):
    recording.close()
    out = recording.work / "narrow"
    run("export", "--db", str(recording.db), "--format", "jsonl", "--tables", "exchanges,sse_events",
        "--where", "is_stream", "--out", str(out))
    ex = [json.loads(line) for line in (out / "exchanges.jsonl").read_text().splitlines()]
    assert len(ex) == 2 and all(e["is_stream"] for e in ex)
    assert not (out / "usage.jsonl").exists()
    future = recording.work / "future"
    run("export", "--db", str(recording.db), "--format", "jsonl", "--since", "2999-01-01T00:00:00Z", "--out", str(future))
    assert (future / "exchanges.jsonl").read_text() == ""
    bad = subprocess.run([agentcap(), "export", "--db", str(recording.db), "--format", "jsonl", "--out",
                          str(recording.work / "bad"), "--where", "true); DELETE FROM exchanges; --"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "refused" in bad.stderr, bad.stderr


@pytest.fixture(scope="module")
def har(recording) -> dict:
    recording.close()
    out = recording.work / "all.har"
    run("export", "--db", str(recording.db), "--format", "har", "--out", str(out))
    return json.loads(out.read_text())


def test_the_har_validates_against_the_har_1_2_schema(har):
    schema = json.loads((HERE / "har-1.2.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(har)
    assert har["log"]["version"] == "1.2"
    # A schema that accepts anything would prove nothing.
    broken = json.loads(json.dumps(har))
    del broken["log"]["entries"][0]["response"]["content"]["mimeType"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_haralyzer_reads_every_entry(har, recording):
    entries = [HarEntry(e) for e in har["log"]["entries"]]
    assert len(entries) == db_count(recording.db, "exchanges")
    streamed = [e for e in entries if e.response.mimeType.startswith("text/event-stream")]
    assert len(streamed) == 2
    for e in streamed:
        assert e.request.method == "POST" and e.status == 200
        assert e.response.text.startswith("event: conversation.response.started")
        events = e.raw_entry["_agentcap"]["sseEvents"]
        assert len(events) == e.response.text.count("\n\n")
        offsets = [ev["offsetMs"] for ev in events]
        assert offsets == sorted(offsets)
    binary = [e for e in har["log"]["entries"] if e["request"].get("postData", {}).get("_encoding") == "base64"]
    texts = [e["request"].get("postData", {}).get("text", "") for e in har["log"]["entries"]]
    # The recorder keeps a non-UTF-8 body as text (with replacement characters) or base64: either way it is there.
    assert binary or any("\ufffd" in t for t in texts)
    assert all(h["value"] == "[REDACTED]" for e in har["log"]["entries"] for h in e["request"]["headers"]
               if h["name"] == "authorization")


def test_the_har_replays_in_headless_chromium(har, recording):
    chromium = os.environ.get("AGENTCAP_CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        pytest.skip(f"no Chromium at {chromium}")
    from playwright.sync_api import sync_playwright

    listing = next(e for e in har["log"]["entries"] if e["request"]["method"] == "GET")
    path = recording.work / "all.har"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route_from_har(str(path), not_found="abort")
            resp = page.goto(listing["request"]["url"])
            assert resp is not None and resp.status == listing["response"]["status"]
            assert json.loads(resp.text()) == json.loads(listing["response"]["content"]["text"])
        finally:
            browser.close()
