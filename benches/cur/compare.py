#!/usr/bin/env python3
"""Cost-report benchmark: `tugboat cur summarize` beside Python's csv module (the seed plan's
Lambda approach), DuckDB and Polars (each limited to one thread) doing the same aggregation —
cost summed per (day, payer, account, service, region) — over one generated CUR-shaped file,
plain and gzip, in the same run. Prints MB/s (of the uncompressed report) and peak RSS.

    python3 benches/cur/compare.py [SIZE_MB] [ROUNDS]   # default 1100 (≥ 1 GB), 3 rounds

Every tool runs once per round, the rounds interleaved, and each tool's best round is printed
(with the spread): on a shared virtual machine the CPU's speed drifts by tens of percent over a
minute, so one run each would compare the machine's moods as much as the tools.

Sets up its own venv (target/bench-venv: duckdb, polars, pinned below) and its files under
target/bench-cur/. Builds tugboat in release first.
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.join(ROOT, "target", "bench-venv")
WORK = os.path.join(ROOT, "target", "bench-cur")
PINS = ["duckdb==2.0.1", "polars==2.1.0"]

PY_CSV = r"""
import csv, gzip, sys
path = sys.argv[1]
f = gzip.open(path, "rt", newline="") if path.endswith(".gz") else open(path, newline="")
r = csv.reader(f)
h = next(r)
ix = [h.index(c) for c in ("lineItem/UsageStartDate", "bill/PayerAccountId", "lineItem/UsageAccountId", "lineItem/ProductCode", "product/region")]
ci = h.index("lineItem/UnblendedCost")
sums = {}
for row in r:
    k = (row[ix[0]][:10], row[ix[1]], row[ix[2]], row[ix[3]], row[ix[4]])
    c = row[ci]
    sums[k] = sums.get(k, 0.0) + (float(c) if c else 0.0)
print(len(sums), file=sys.stderr)
"""

DUCKDB = r"""
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads = 1")
n = con.execute('''
  SELECT count(*) FROM (
    SELECT substr("lineItem/UsageStartDate", 1, 10) AS day, "bill/PayerAccountId", "lineItem/UsageAccountId",
           "lineItem/ProductCode", "product/region", sum(coalesce(TRY_CAST("lineItem/UnblendedCost" AS DOUBLE), 0))
    FROM read_csv(?, all_varchar = true, header = true, delim = ',', quote = '"', escape = '"', sample_size = -1)
    GROUP BY ALL)
''', [sys.argv[1]]).fetchone()[0]
print(n, file=sys.stderr)
"""

POLARS = r"""
import os, sys
import polars as pl
path = sys.argv[1]
cols = ["lineItem/UsageStartDate", "bill/PayerAccountId", "lineItem/UsageAccountId", "lineItem/ProductCode", "product/region", "lineItem/UnblendedCost"]
src = pl.read_csv(path, columns=cols, infer_schema=False).lazy() if path.endswith(".gz") else pl.scan_csv(path, infer_schema=False).select(cols)
out = (src.with_columns(pl.col("lineItem/UsageStartDate").str.slice(0, 10).alias("day"),
                        pl.col("lineItem/UnblendedCost").cast(pl.Float64, strict=False).fill_null(0.0))
          .group_by(["day", "bill/PayerAccountId", "lineItem/UsageAccountId", "lineItem/ProductCode", "product/region"])
          .agg(pl.col("lineItem/UnblendedCost").sum())
          .collect())
print(out.height, file=sys.stderr)
"""


def run(cmd, env=None):
    """Wall seconds, peak RSS (MiB), CPU seconds and last stderr line of `cmd`."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    err = p.stderr.read().decode().strip()
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed: {err}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024, cpu, err.splitlines()[-1] if err else ""


def main():
    size_mb = float(sys.argv[1]) if len(sys.argv) > 1 else 1100
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    os.makedirs(WORK, exist_ok=True)
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    subprocess.check_call([os.path.join(VENV, "bin", "pip"), "install", "-q", *PINS])
    py = os.path.join(VENV, "bin", "python")
    subprocess.check_call(["cargo", "build", "--release", "--quiet", "--bin", "tugboat"], cwd=ROOT)
    tugboat = os.path.join(ROOT, "target", "release", "tugboat")
    plain = os.path.join(WORK, f"cur-{int(size_mb)}mb.csv")
    gz = plain + ".gz"
    if not os.path.exists(plain):
        subprocess.check_call([sys.executable, os.path.join(ROOT, "benches", "cur", "gen.py"), plain, str(size_mb)], cwd=ROOT)
    if not os.path.exists(gz):
        with open(gz, "wb") as out:
            subprocess.check_call(["gzip", "-c", "-6", plain], stdout=out)
    mb = os.path.getsize(plain) / 1e6
    one = dict(os.environ, POLARS_MAX_THREADS="1", RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cases = []
    for label, path in (("plain", plain), ("gzip", gz)):
        for name, cmd in (
            ("tugboat cur summarize", [tugboat, "cur", "summarize", path]),
            # Held to one core, as the others are held to one thread.
            ("tugboat, 1 core (taskset)", ["taskset", "-c", "0", tugboat, "cur", "summarize", path]),
            ("python csv", [py, "-c", PY_CSV, path]),
            ("duckdb (1 thread)", [py, "-c", DUCKDB, path]),
            ("polars (1 thread)", [py, "-c", POLARS, path]),
        ):
            cases.append((label, name, cmd))
        if label == "gzip":
            cases.append((label, "gzip -dc > /dev/null", ["sh", "-c", f"gzip -dc {gz} > /dev/null"]))
    # Read both files once so that no round pays for the disk (in small reads: a child's peak
    # RSS starts from this process's at fork).
    for path in (plain, gz):
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    results = {}
    for r in range(rounds):
        print(f"round {r + 1} of {rounds}", file=sys.stderr, flush=True)
        for label, name, cmd in cases:
            wall, rss, cpu, said = run(cmd, env=one)
            results.setdefault((label, name), []).append((mb / wall, rss, cpu / wall, said))
    print(f"report: {mb:.0f} MB plain, {os.path.getsize(gz) / 1e6:.0f} MB gzip; {os.cpu_count()} cores; best of {rounds} interleaved rounds")
    print(f"{'':38} {'MB/s':>8} {'(range)':>13} {'peak RSS':>10} {'CPU/wall':>9}")
    for label, name, _ in cases:
        runs = results[(label, name)]
        best = max(runs, key=lambda x: x[0])
        lo = min(x[0] for x in runs)
        rss = max(x[1] for x in runs)
        print(f"{label:6} {name:31} {best[0]:8.0f} {f'({lo:.0f}-{best[0]:.0f})':>13} {rss:8.0f} MB {best[2]:9.2f}   {best[3]}", flush=True)


if __name__ == "__main__":
    main()
