"""The example repo after `make demo` (materialized, a model served and watched, a retrain waiting for
approval), plus a challenger shadow-scored beside production: the state every UI page has to show.

    python -m tests.ui.demo_state DIR     # builds it in DIR (what the `demo_repo` fixture runs)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "definitions"
FILES = ("entities.py", "features.py", "pipelines.py", "demo.py", "generate_data.py", "featurestore.toml")


def build(repo: Path) -> Path:
    """Copy the example repo's files into `repo` and run the steps of `make demo` there, then shadow."""
    repo.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy(DEMO / name, repo / name)
    fs = str(Path(sys.executable).parent / "fs")
    steps = [
        [sys.executable, "generate_data.py"],
        [fs, "--repo", ".", "apply"],
        [fs, "--repo", ".", "materialize-incremental"],
        [sys.executable, "demo.py"],
        [fs, "--repo", ".", "retrain", "trip_completion"],
    ]
    for step in steps:
        done = subprocess.run(step, cwd=repo, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(step)} failed in {repo}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
    shadow(repo)
    return repo


def shadow(repo: Path, rows: int = 200) -> None:
    """Alias the pending candidate `challenger` and serve `rows` trips through production: the
    challenger scores each in the shadow, and the labels are fed back for both."""
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from fastapi.testclient import TestClient

    from featurestore import FeatureStore
    from featurestore.server import create_app

    store = FeatureStore(repo)
    candidate = store.pipelines.runs("trip_completion")[0].candidate_version
    assert candidate is not None, "the demo's retrain registered no candidate"
    store.models.set_alias("trip_completion", "challenger", candidate)
    trips = store.get_historical_features(spine="trips", features=["driver_hourly_stats:conv_rate"]).entity_df
    sample = trips.to_pandas().tail(rows)
    requests = sample[["driver_id", "customer_id", "distance_km"]].to_dict("records")
    labels = sample["trip_completed"].tolist()
    feedback = []
    with TestClient(create_app(store)) as client:  # leaving it flushes the logs (the shadow's too)
        # The first request through production makes the server find and load the challenger: the
        # requests before it is loaded go unshadowed (featurestore.models.shadow).
        client.post("/models/trip_completion@production/predict", json={"entities": requests[:1]})
        time.sleep(2)
        for start in range(0, len(requests), 50):
            answer = client.post(
                "/models/trip_completion@production/predict", json={"entities": requests[start : start + 50]}
            )
            answer.raise_for_status()
            rid = answer.json()["request_id"]
            feedback += [
                {"request_id": rid, "row": j, "label": v} for j, v in enumerate(labels[start : start + 50])
            ]
        client.post(
            "/models/trip_completion@production/feedback", json={"feedback": feedback}
        ).raise_for_status()
    store.close()


if __name__ == "__main__":
    build(Path(sys.argv[1]))
