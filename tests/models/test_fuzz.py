"""The model endpoints fuzzed from the app's own OpenAPI document (schemathesis), over real HTTP and
Redis, with an admin key: no answer is a 5xx, every status is documented, every body matches its schema."""

from __future__ import annotations

import pytest

from tests.models.conftest import build_store, training_frame
from tests.server.conftest import LiveServer

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import checks  # noqa: E402

from featurestore.server import create_app  # noqa: E402

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ADMIN_KEY = "admin-key-0123456789"
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
EXAMPLES = 30


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, redis_server):
    from sklearn.linear_model import LogisticRegression

    config = f'[server]\nmax_batch_rows = 50\n[[server.api_keys]]\nname = "boss"\nrole = "admin"\nkey = "{ADMIN_KEY}"\n'
    store = build_store(
        tmp_path_factory.mktemp("fuzz-models"), "redis", redis_url=redis_server.url, config=config
    )
    df, y = training_frame()
    model = LogisticRegression().fit(df, y > y.median())
    store.models.register("eta", model, feature_service="driver_activity", missing_policy="null")
    store.models.set_alias("eta", "production", 1)
    server = LiveServer(create_app(store)).start()
    yield server
    server.stop()
    store.close()


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzed_model_requests_get_no_5xx_and_match_the_schema(fuzz_server, mode):
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations() if "/models" in r.ok().path]
    # predict, feedback, aliases (2), versions, catalog (2), approve, reject, pending
    assert len(operations) == 10
    failures = []

    def fuzz(op):
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=op.as_strategy(generation_mode=GenerationMode(mode)))
        def run(case):
            response = case.call(base_url=fuzz_server.url, headers={"X-API-Key": ADMIN_KEY}, timeout=10)
            case.validate_response(response, checks=CHECKS)

        run()

    for op in operations:
        try:
            fuzz(op)
        except Unsatisfiable:  # negative mode, an operation without inputs: nothing to make invalid
            assert mode == "negative"
        except Exception as e:
            failures.append(f"{op.method.upper()} {op.path}: {e}")
    assert not failures, "\n\n".join(failures)
