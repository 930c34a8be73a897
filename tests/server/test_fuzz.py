"""Property-based API fuzzing with schemathesis, from the app's own OpenAPI document, against a real
server over Redis (with API keys, sending an admin key): no answer is a 5xx, every status code is
documented, and every answer matches its documented schema and content type."""

from __future__ import annotations

import pytest

from tests.server.conftest import KEYS, serve_redis_repo

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import checks  # noqa: E402

pytestmark = [pytest.mark.redis, pytest.mark.slow]

# Not `negative_data_rejection`: the server ignores unknown query parameters (as FastAPI does), and
# the key header we add to every case would undo a case that drops it. Invalid bodies, paths and
# values are still generated (negative mode) and must get a documented 4xx, never a 5xx.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
EXAMPLES = 40  # per operation and mode; ~15 operations


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, redis_server):
    with serve_redis_repo(
        tmp_path_factory.mktemp("fuzz-repo"), redis_server, api_keys=True, max_batch_rows=200
    ) as server:
        yield server


def operations(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    ops = [result.ok() for result in schema.get_all_operations()]
    # The model endpoints (server/routers/models.py) are fuzzed with their own fixtures in tests/models/.
    return [op for op in ops if "/models" not in op.path]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzed_requests_get_no_5xx_and_match_the_schema(fuzz_server, mode):
    from schemathesis import GenerationMode

    headers = {"X-API-Key": KEYS["boss"][1]}  # the documented scheme (Bearer works too)
    failures = []

    def fuzz(op):
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=op.as_strategy(generation_mode=GenerationMode(mode)))
        def run(case):
            response = case.call(base_url=fuzz_server.url, headers=headers, timeout=10)
            case.validate_response(response, checks=CHECKS)

        run()

    for op in operations(fuzz_server):
        try:
            fuzz(op)
        except Unsatisfiable:  # negative mode, an operation without inputs: nothing to make invalid
            assert mode == "negative"
        except Exception as e:  # collect every operation's failure, then report them together
            failures.append(f"{op.method.upper()} {op.path}: {e}")
    assert not failures, "\n\n".join(failures)
