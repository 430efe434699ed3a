"""Two `agentcap proxy --ship s3://…` instances recording disjoint traffic into one lake held by an S3 emulator
(moto), read back straight from the emulator by DuckDB (its httpfs extension, from PyPI's duckdb-extension-httpfs) and
by ClickHouse's engine (chdb, its s3() table function);
one proxy killed with SIGKILL in the middle of a segment and restarted: no segment lost, none duplicated.

Environment: AGENTCAP_BIN, the agentcap binary (default: <cargo target dir>/debug/agentcap).
"""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import chdb
import duckdb
import duckdb_extensions
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "interop" / "support"))
import polling  # noqa: E402
from polling import free_port  # noqa: E402
from procs import Proc, agentcap  # noqa: E402


def wait_for(what: str, check, bound: float = 120.0):
    """`polling.wait_for`, checking every 0.1 s."""
    return polling.wait_for(what, check, bound, step=0.1)

BUCKET = "lake"
PREFIX = "agentcap"
KEY, SECRET, REGION = "testing", "testing-secret", "us-east-1"
TABLES = {
    "exchanges": "id",
    "sse_events": "exchange_id || '/' || seq",
    "entries": "exchange_id || '/' || direction || '/' || position",
    "usage": "exchange_id",
}


@pytest.fixture(scope="module")
def s3():
    port = free_port()
    # Parts of multipart uploads may be small here (S3's own minimum is 5 MiB): instance b ships with 4 KiB parts.
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, S3_UPLOAD_PART_MIN_SIZE="4096"))
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          region_name=REGION)

    def up():
        try:
            client.create_bucket(Bucket=BUCKET)
            return True
        except Exception:
            return moto.poll() is not None and pytest.fail("moto did not start")

    wait_for("moto", up, 60)
    yield endpoint, client
    moto.terminate()
    moto.wait(10)


@pytest.fixture(scope="module")
def twin():
    p = Proc([agentcap(), "sim", "--listen", "127.0.0.1:0", "--exit-on-stdin-close"], stop_timeout=90)
    yield p.url
    p.stop()


def start_proxy(upstream: str, endpoint: str, db: Path, instance: str, hang_at: int | None = None,
                part_bytes: int | None = None) -> Proc:
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION=REGION)
    env.pop("AGENTCAP_SHIP_TEST_HANG_AT", None)
    env.pop("AGENTCAP_SHIP_TEST_PART_BYTES", None)
    if hang_at is not None:
        env["AGENTCAP_SHIP_TEST_HANG_AT"] = str(hang_at)
    if part_bytes is not None:
        env["AGENTCAP_SHIP_TEST_PART_BYTES"] = str(part_bytes)
    # The proxy ships what it committed on the way out (within 60 s): its stop waits 90 s.
    return Proc([agentcap(), "proxy", "--listen", "127.0.0.1:0", "--no-admin", "--upstream", upstream,
                 "--db", str(db), "--ship", f"s3://{BUCKET}/{PREFIX}", "--ship-endpoint", endpoint,
                 "--ship-every", "1", "--ship-rows", "1", "--instance-id", instance, "--exit-on-stdin-close"],
                env=env, stop_timeout=90)


def converse(proxy: str, n: int, tag: str) -> None:
    """`n` conversations of two turns each (the second streamed) through `proxy`."""
    def post(path: str, body: dict) -> bytes:
        req = urllib.request.Request(proxy + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json",
                                              "authorization": "Bearer test-key"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200
            return r.read()

    for i in range(n):
        start = json.loads(post("/v1/conversations",
                                {"model": "mistral-medium-latest", "inputs": f"{tag} question {i}"}))
        post(f"/v1/conversations/{start['conversation_id']}", {"inputs": "and then?", "stream": True})


def objects(client, table: str | None = None) -> list[str]:
    keys, token = [], None
    while True:
        kw = {"Bucket": BUCKET, "Prefix": f"{PREFIX}/" + (f"table={table}/" if table else "")}
        if token:
            kw["ContinuationToken"] = token
        page = client.list_objects_v2(**kw)
        keys += [o["Key"] for o in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return keys


def lake_duckdb(endpoint: str, ext_dir: Path) -> duckdb.DuckDBPyConnection:
    """DuckDB with httpfs (installed from its PyPI wheel into a private extension directory, never downloaded) and the
    emulator as its S3."""
    con = duckdb.connect()
    con.execute(f"SET extension_directory = '{ext_dir}'")
    duckdb_extensions.import_extension("httpfs", con=con)
    con.execute("LOAD httpfs")
    con.execute(f"CREATE SECRET lake (TYPE s3, KEY_ID '{KEY}', SECRET '{SECRET}', REGION '{REGION}', "
                f"ENDPOINT '{endpoint.removeprefix('http://')}', URL_STYLE 'path', USE_SSL false)")
    return con


def local_counts(dbs: list[Path]) -> dict:
    """Row counts of the proxies' own files, read by agentcap itself (the files are in its DuckDB's format)."""
    total = {t: 0 for t in TABLES}
    sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in TABLES)
    for db in dbs:
        out = subprocess.run([agentcap(), "query", "--db", str(db), "--format", "json", sql],
                             check=True, capture_output=True, text=True).stdout
        row = json.loads(out)[0]
        for t in TABLES:
            total[t] += int(row[t])
    return total


def test_two_instances_one_lake_and_a_kill_9_mid_segment(s3, twin, tmp_path):
    endpoint, client = s3
    db_a, db_b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"

    # Instance b: ships on its own, then stops (shipping the rest on the way out); files above 4 KiB go up as
    # multipart uploads.
    b = start_proxy(twin, endpoint, db_b, "proxy-b", part_bytes=4096)
    converse(b.url, 4, "b")
    b.stop()
    assert b.p.returncode == 0, "".join(b.err)

    # Instance a: its second segment hangs after its first file; killed with SIGKILL there.
    a = start_proxy(twin, endpoint, db_a, "proxy-a", hang_at=1)
    converse(a.url, 3, "a")
    wait_for("a's first segment", lambda: any("instance=proxy-a/part-0000000000" in k for k in objects(client)))
    converse(a.url, 3, "a2")
    wait_for("a's second segment to start",
             lambda: any("instance=proxy-a/part-0000000001" in k for k in objects(client, "exchanges")))
    assert not any("instance=proxy-a/part-0000000001" in k for k in objects(client, "entries")), \
        "the hook stops after the first file"
    a.kill9()
    # Restarted: the journal is replayed, the planned segment made again under the same names, the rest shipped.
    a = start_proxy(twin, endpoint, db_a, "proxy-a")
    converse(a.url, 2, "a3")
    a.stop()
    assert a.p.returncode == 0, "".join(a.err)

    want = local_counts([db_a, db_b])
    print("local rows, both instances:", want)
    assert want["exchanges"] == 2 * (4 + 3 + 3 + 2)
    names = objects(client)
    assert len(names) == len(set(names))
    assert any("instance=proxy-a" in k for k in names) and any("instance=proxy-b" in k for k in names)
    # A multipart upload's ETag is "<md5 of the parts' md5s>-<parts>": b's larger files went up in parts, a's whole.
    etags = {k: client.head_object(Bucket=BUCKET, Key=k)["ETag"].strip('"') for k in names}
    sizes = {k: client.head_object(Bucket=BUCKET, Key=k)["ContentLength"] for k in names}
    multipart = [k for k, e in etags.items() if "-" in e]
    print("multipart uploads:", len(multipart), "of", len(names), "objects")
    assert multipart and all("instance=proxy-b" in k for k in multipart)
    assert all("-" in etags[k] for k in names if "instance=proxy-b" in k and sizes[k] > 4096)

    # (a) DuckDB over the whole lake, straight from the emulator: every row once.
    lake = f"s3://{BUCKET}/{PREFIX}"
    con = lake_duckdb(endpoint, tmp_path / "duckdb-extensions")
    for t, key in TABLES.items():
        n, distinct, instances = con.execute(
            f"SELECT count(*), count(DISTINCT {key}), count(DISTINCT instance) "
            f"FROM read_parquet('{lake}/table={t}/*/*/*.parquet', hive_partitioning = true)").fetchone()
        print(f"duckdb lake {t}: {n} rows, {distinct} distinct, {instances} instances")
        assert n == want[t] and distinct == n, (t, n, distinct, want[t])
    segs = con.execute(f"SELECT instance, count(*) FROM read_parquet('{lake}/table=exchanges/*/*/*.parquet', "
                       "hive_partitioning = true, filename = true) GROUP BY ALL ORDER BY 1").fetchall()
    print("exchanges per instance:", segs)

    # (b) ClickHouse's engine, straight from the emulator with s3().
    for t, key in TABLES.items():
        ch_key = key.replace(" || ", ", ").replace("'/'", "'/'")
        url = f"{endpoint}/{BUCKET}/{PREFIX}/table={t}/**/*.parquet"
        res = chdb.query(f"SELECT count(), uniqExact(concat({ch_key}::String)) FROM s3('{url}', '{KEY}', '{SECRET}', "
                         "'Parquet')", "CSV")
        n, distinct = (int(x) for x in str(res).strip().split(","))
        print(f"chdb lake {t}: {n} rows, {distinct} distinct")
        assert n == want[t] and distinct == n, (t, n, distinct, want[t])
