"""Shadow scoring's cost on the request path: predict p50 with and without a challenger alias.

    .venv/bin/python benchmarks/shadow.py [--n 3000] [--json out.json]

What it does:
1. starts its own redis-server, builds the repo of benchmarks/predict.py (one view of 10 features,
   10,000 entities online, a 9-feature service), registers `eta` v1 (a scikit-learn Ridge, alias
   production) and v2 (a LinearRegression on the same features: the challenger when aliased);
2. runs the server in its own process (one worker) and sends `POST /models/eta@production/predict`
   (1 entity, a unique request id each) over one keep-alive connection, in interleaved rounds:
   A without a `challenger` alias, B with `challenger` -> v2 (the server follows the move; the
   benchmark waits a few watcher intervals after each move, then warms up);
3. checks that the answers are byte-identical between A and B (the same body, request id included,
   is sent in every round), and, from the prediction log, that every B request was shadowed and no
   A request was.

Target (issue 15): B's p50 <= 1.10 x A's p50. Prints PASS or FAIL; exits 1 on FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.predict import NUMERIC, SERVICE, request  # noqa: E402
from benchmarks.server import Connection, build_repo, own_redis, percentiles, wait_until_ok  # noqa: E402
from featurestore import FeatureStore  # noqa: E402
from tests.redis_server import free_port  # noqa: E402

ROUNDS = 5  # A and B alternate, ROUNDS times each, so a noisy neighbour hits both alike
TARGET = 1.10
SETTLE = 3.0  # seconds after an alias move: the server's watcher looks every second
WARM_UP = 100
PATH = "/models/eta@production/predict"


def setup(root: Path, redis_url: str, entities: int) -> FeatureStore:
    from sklearn.linear_model import LinearRegression, Ridge

    store = build_repo(root, redis_url, entities)
    defs = root / "features.py"
    defs.write_text(
        defs.read_text().replace("PushSource, String", "PushSource, String, FeatureService") + SERVICE
    )
    store.apply()
    rng = np.random.default_rng(0)
    X = pd.DataFrame({c: rng.random(500) for c in NUMERIC})
    y = X.to_numpy() @ rng.random(len(NUMERIC)) + rng.normal(0, 0.1, 500)
    store.models.register("eta", Ridge().fit(X, y), feature_service="driver_model")
    store.models.register("eta", LinearRegression().fit(X, y), feature_service="driver_model")
    store.models.set_alias("eta", "production", 1)
    return store


def start_server(repo: Path, port: int) -> subprocess.Popen:
    code = (
        "import sys; from featurestore.server.run import serve; serve(sys.argv[1], '127.0.0.1', int(sys.argv[2]), 1, "
        "log_level='warning')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(repo), str(port)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until_ok(proc, port, request(PATH, {"entities": [{"driver_id": 1}], "request_id": "start"}))
    return proc


def interleaved(store: FeatureStore, port: int, entities: int, n: int) -> dict:
    """p50/p99 of A (no challenger) and B (challenger) over n requests each, in ROUNDS rounds; the
    bodies of the byte-identity probe per round."""
    rng = random.Random(3)
    per_round = max(1, n // ROUNDS)
    ids = [rng.randrange(entities) for _ in range(per_round + WARM_UP)]
    same = request(PATH, {"entities": [{"driver_id": 7}, {"driver_id": 8}], "request_id": "same-request"})
    conn = Connection(port)
    samples: dict[str, list[float]] = {"A": [], "B": []}
    probes: dict[str, list[bytes]] = {"A": [], "B": []}

    def call(body: bytes) -> bytes:
        status, answer = conn.call(body)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {answer[:300]!r}")
        return answer

    try:
        for r in range(ROUNDS):
            for variant in ("A", "B"):
                if variant == "B":
                    store.models.set_alias("eta", "challenger", 2)
                else:
                    if "challenger" in store.models.aliases("eta"):
                        store.models.delete_alias("eta", "challenger")
                time.sleep(SETTLE)
                for i in ids[:WARM_UP]:
                    call(
                        request(
                            PATH, {"entities": [{"driver_id": i}], "request_id": f"warm-{variant}{r}-{i}"}
                        )
                    )
                bodies = [
                    request(PATH, {"entities": [{"driver_id": i}], "request_id": f"{variant}{r}-{k}"})
                    for k, i in enumerate(ids[WARM_UP:])
                ]
                times = samples[variant]
                for body in bodies:
                    t = time.perf_counter()
                    call(body)
                    times.append(time.perf_counter() - t)
                probes[variant].append(call(same))
    finally:
        conn.close()
    return {"A": percentiles(samples["A"]), "B": percentiles(samples["B"]), "probes": probes}


def shadowed(log_path: Path) -> dict[str, int]:
    """Measured requests of A and B with a shadow row in the prediction log."""
    import duckdb

    files = sorted(str(f) for f in (log_path / "eta").glob("date=*/*.parquet"))
    con = duckdb.connect()
    rows = con.execute(
        "SELECT substr(request_id, 1, 1), count(*) FROM read_parquet(?, union_by_name = true) "
        "WHERE variant = 'shadow' AND regexp_matches(request_id, '^[AB][0-9]+-') GROUP BY 1",
        [files],
    ).fetchall()
    return {"A": 0, "B": 0, **{k: int(v) for k, v in rows}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=3000, help="measured requests per variant")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    redis = own_redis("benchmarks/shadow.py")
    workdir = Path(tempfile.mkdtemp(prefix="fs-bench-shadow-"))
    results: dict = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "rounds": ROUNDS}
    proc = None
    try:
        store = setup(workdir / "repo", redis.url, args.entities)
        port = free_port()
        proc = start_server(workdir / "repo", port)
        measured = interleaved(store, port, args.entities, args.n)
        proc.terminate()
        proc.wait(30)  # its shutdown drains the shadow queue and the log
        proc = None
        probes = measured.pop("probes")
        results.update(measured)
        results["ratio_p50"] = results["B"]["p50_ms"] / results["A"]["p50_ms"]
        results["byte_identical"] = len({*probes["A"], *probes["B"]}) == 1
        results["shadowed"] = shadowed(Path(store.config.monitor.log_path))
        results["pass"] = bool(
            results["ratio_p50"] <= TARGET
            and results["byte_identical"]
            and results["shadowed"]["A"] == 0
            and results["shadowed"]["B"] == results["B"]["n"]
        )
        store.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not results["pass"]:
        sys.exit(1)


def report(r: dict) -> None:
    print(
        f"\nshadow scoring benchmark ({r['cpus']} CPUs, Python {r['python']}, Redis backend, 1 worker, "
        f"1 entity, {r['rounds']} interleaved rounds)\n"
    )
    print(f"{'':44}{'p50 ms':>9}{'p99 ms':>9}")
    for key, label in (("A", "predict, no challenger (A)"), ("B", "predict, challenger shadowed (B)")):
        print(f"{label:44}{r[key]['p50_ms']:9.3f}{r[key]['p99_ms']:9.3f}")
    s = r["shadowed"]
    print(
        f"\n  shadowed requests: A {s['A']:,} of {r['A']['n']:,}, B {s['B']:,} of {r['B']['n']:,}; "
        f"answers byte-identical between A and B: {r['byte_identical']}"
    )
    verdict = "PASS" if r["pass"] else "FAIL"
    print(f"  [{verdict}] p50 B / A = {r['ratio_p50']:.3f} (target <= {TARGET:.2f})")


if __name__ == "__main__":
    main()
