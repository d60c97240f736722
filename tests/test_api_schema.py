"""The OpenAPI document is the contract: a bounded schemathesis run (30 examples per operation,
real service, every role's token) finds no 5xx, no status code or content type the document does
not declare, and no response that does not match its declared schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from medseg.app.api.main import create_app
from tests.test_dicom_node import running

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: schema-valid requests are accepted too, except POST /reviews: "a corrected mask or accepted=true,
#: not both or neither" is a rule of two fields that a multipart schema cannot state (400, review.invalid)
POSITIVE = [positive_data_acceptance]


#: a second app on the service the fixture runs (the first one's lifespan starts and stops it)
APP = create_app(None, lifespan=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with running(tmp_path_factory.mktemp("api")) as (service, client):
        APP.state.service = service
        yield service, client


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_keeps_its_openapi_contract(case, served):
    positive = [] if (case.method, case.path) == ("POST", "/reviews") else POSITIVE
    case.call_and_validate(headers={"Authorization": served[1].headers["Authorization"]}, checks=CHECKS + positive,
                           timeout=60)  # a loaded CI machine is slow; a hang still fails


def test_every_operation_declares_a_typed_success_response_and_problem_details(served):
    document = served[1].get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            ok = next(code for code in op["responses"] if code.startswith("2"))
            content = op["responses"][ok].get("content", {})
            if path != "/metrics":
                assert "$ref" in content["application/json"]["schema"], (method, path)
            for code in ("401", "403"):
                assert "application/problem+json" in op["responses"][code]["content"], (method, path, code)
