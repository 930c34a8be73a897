"""Redis Cluster against one Redis: 100-entity online lookups, same data, same process, interleaved.

    .venv/bin/python benchmarks/scale_cluster.py [--entities 20000] [--iterations 3000]

Setup (started by this script, stopped at the end): a local 3-master Redis Cluster
(tests/redis_cluster.py) and one redis-server (tests/redis_server.py), both on loopback, both
loaded through the OnlineStore contract with the same rows of benchmarks/online.py's two views
x 5 features (10 features per lookup, so 2 keys per entity).

Measured: `store.get_online_features(10 features, 100 random entities).to_dict()`, sync, p50/p99,
the two stores taking turns in rounds over the same entity ids (benchmarks/online.py `run`); the
same at batch 1; and the write rate of the load. Target (issue 16): cluster p50 <= 1.5x the single
Redis p50 at batch 100 (`ratio`). On a cluster a 100-entity lookup is one request to each of the
three nodes, all in flight at once; on one Redis it is one MGET.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.online import REFS, load, make_data, open_store, run  # noqa: E402
from tests.redis_cluster import start_cluster  # noqa: E402
from tests.redis_server import start_redis  # noqa: E402


def run_cluster_benchmark(entities: int = 20_000, iterations: int = 3_000, rounds: int = 5) -> dict[str, Any]:
    """Figures of the cluster against one Redis; `ratio` = cluster p50 / single p50 at batch 100."""
    single, cluster = start_redis(), start_cluster()
    if single is None or cluster is None:
        raise RuntimeError("needs redis-server and redis-cli (apt-get install redis-server)")
    stores = []
    try:
        with tempfile.TemporaryDirectory(prefix="fs-bench-cluster-") as tmp:
            one = open_store(Path(tmp) / "single", f'[online]\ntype = "redis"\nurl = "{single.url}"\n')
            many = open_store(
                Path(tmp) / "cluster", f'[online]\ntype = "redis"\nurl = "{cluster.url}"\ncluster = true\n'
            )
            stores += [one, many]
            tables = make_data(entities)
            write_rate = {"single": load(one, tables), "cluster": load(many, tables)}

            def lookup(store: Any) -> Any:
                return lambda ids: store.get_online_features(REFS, {"driver_id": ids}).to_dict()

            contenders = {"single": lookup(one), "cluster": lookup(many)}
            probe = list(range(0, entities, max(1, entities // 100)))[:100]
            if contenders["single"](probe) != contenders["cluster"](probe):
                raise AssertionError("the cluster and the single Redis answer differently")
            at_100 = run(contenders, entities, 100, iterations, rounds)
            at_1 = run(contenders, entities, 1, iterations, rounds)
    finally:
        for s in stores:
            s.close()
        single.stop()
        cluster.stop()
    return {
        "entities": entities,
        "features_per_lookup": len(REFS),
        "masters": len(cluster.ports),
        "batch_100_p50_us": {k: round(v[0], 1) for k, v in at_100.items()},
        "batch_100_p99_us": {k: round(v[1], 1) for k, v in at_100.items()},
        "batch_1_p50_us": {k: round(v[0], 1) for k, v in at_1.items()},
        "write_rows_per_s": {k: round(v) for k, v in write_rate.items()},
        "ratio": round(at_100["cluster"][0] / at_100["single"][0], 3),
        "ratio_batch_1": round(at_1["cluster"][0] / at_1["single"][0], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=20_000)
    parser.add_argument("--iterations", type=int, default=3_000)
    args = parser.parse_args()
    figures = run_cluster_benchmark(args.entities, args.iterations)
    print(json.dumps(figures, indent=2))
    passed = figures["ratio"] <= 1.5
    print(f"cluster p50 / single Redis p50 at 100 entities: {figures['ratio']:.2f} (target <= 1.5): "
          f"{'PASS' if passed else 'FAIL'}")  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
