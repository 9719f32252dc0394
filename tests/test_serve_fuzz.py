"""Fuzzing every route of the OpenAPI schema with schemathesis (valid and invalid requests,
with an admin key): no response is a 5xx, and every response matches the schema (status,
content type, body)."""

from __future__ import annotations

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from serve_fixtures import make_model_folder, running

from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.keys import KeyStore
from lmforge.serve.models import ModelSpec

EXAMPLES = 30  # per route (the default suite keeps its time budget)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    folder = make_model_folder(root / "tiny", max_seq_len=64)
    store = KeyStore(root / "serve.db")
    secret = store.create("admin", "fuzzer")[1]
    app = build_app([ModelSpec("tiny", str(folder))],
                    ServerOptions(db=root / "serve.db", request_timeout=20))
    with running(app) as url:
        yield url, {"Authorization": f"Bearer {secret}"}


def _served_model(drawn):
    """Half the bodies name the served model, so they get past the model lookup."""
    case, name_it = drawn
    if name_it and isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = "tiny"
    return case


def test_every_route_answers_in_its_schema(fuzz_server):
    url, headers = fuzz_server
    schema = schemathesis.openapi.from_url(url + "/openapi.json", headers=headers)
    labels = []
    statuses: collections.Counter = collections.Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))
        strategy = st.tuples(strategy, st.booleans()).map(_served_model)

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            r = case.call_and_validate(base_url=url, headers=headers, checks=CHECKS,
                                       timeout=60)
            statuses[r.status_code] += 1

        fuzz()
    assert {"POST /v1/completions", "POST /v1/chat/completions", "POST /v1/embeddings",
            "GET /v1/models", "POST /admin/keys"} <= set(labels)
    print(dict(statuses))
    assert statuses[200] > 0 and statuses[400] > 0  # valid and invalid requests were sent
