"""Team scale (issue 16): the Spark engine against DuckDB, and Redis Cluster against one Redis.

    .venv/bin/python benchmarks/scale.py [--scale 10] [--skip-spark] [--skip-cluster] [--json out.json]

1. Spark (`benchmarks/scale_spark.py`): the same point-in-time join (10M feature rows x 1M entity
   rows at --scale 10) on the DuckDB engine and on Spark `local[2]`, both through
   `get_historical_features`; the ratio is reported (Spark is expected to be slower on one machine:
   the point is that it runs, agrees, and keeps the driver's memory flat).
2. Redis Cluster (`benchmarks/scale_cluster.py`): a 100-entity lookup on a local 3-master cluster
   and on one Redis, interleaved, same data. Target: cluster p50 <= 1.5x the single Redis p50.

Prints each part's figures and PASS or FAIL for the cluster target; exits 1 on FAIL.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="Spark PIT size: scale x (1M x 100k)")
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    ok = True
    if not args.skip_spark:
        from benchmarks.scale_spark import run_spark_benchmark

        results["spark"] = run_spark_benchmark(args.scale)
        print(json.dumps(results["spark"], indent=2, default=str))
    if not args.skip_cluster:
        from benchmarks.scale_cluster import run_cluster_benchmark

        results["cluster"] = cluster = run_cluster_benchmark()
        print(json.dumps(cluster, indent=2, default=str))
        ratio = cluster["ratio"]
        passed = ratio <= 1.5
        ok = ok and passed
        print(
            f"Redis Cluster 100-entity p50 / single Redis p50: {ratio:.2f} (target <= 1.5): "
            f"{'PASS' if passed else 'FAIL'}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
