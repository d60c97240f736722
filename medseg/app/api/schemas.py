"""The API's response models, as OpenAPI documents them. Rows of the service's tables (jobs,
reviews, alerts, events) are objects whose fields are those tables' columns; the envelopes
around them are typed here, and every error is a :class:`Problem` (RFC 9457)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

Row = dict[str, Any]


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Problem(BaseModel):
    """application/problem+json"""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str | None = None


class Health(_Out):
    status: str  # ok | failing
    version: str
    problem: str | None = None


class Readiness(_Out):
    ready: bool


class StudySummary(_Out):
    study_uid: str
    jobs: int
    updated_at: str | None
    received_at: str | None = None
    states: dict[str, int]
    #: model versions (name/version) that segmented it, or were assigned to it
    models: list[str] = []
    calling_aes: list[str] = []
    #: lesions found by its latest result (None: no result yet)
    lesions: int | None = None


class StudiesPage(_Out):
    studies: list[StudySummary]
    limit: int
    offset: int


class Study(_Out):
    study_uid: str
    series: list[Row]
    jobs: list[Row]


class AuditPage(_Out):
    events: list[Row]
    limit: int
    offset: int
    next_offset: int | None


class Timeline(_Out):
    study_uid: str
    events: list[Row]


class AuditHead(_Out):
    seq: int
    hash: str


class Registry(_Out):
    name: str
    active: str
    versions: list[str]
    history: list[Row]


class RollbackReport(_Out):
    model: str
    rolled_back: str
    active: str
    gate: Row
    requeued_not_started: int
    affected: list[Row]
    reprocessed: list[Row]


class Reference(_Out):
    phantom_seed: int
    mask_sha256: str
    truth_dice: float | None
    truth_lesions_found: str | None


class Promotion(_Out):
    name: str
    previous: str
    active: str
    gate: Row


class ReviewOutcome(_Out):
    review: Row
    slos: list[Row]


class Reviews(_Out):
    reviews: list[Row]


class MonitoringSummary(_Out):
    generated_at: str
    since: str | None
    settings: Row
    models: list[Row]
    alerts_firing: list[Row]
    alerts_recent: list[Row]
    unmatched_reviews: int


class Alerts(_Out):
    alerts: list[Row]


class Worklist(_Out):
    items: list[Row]


class Token(_Out):
    name: str
    roles: list[str]
    created_at: str | None
    created_by: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None


class NewToken(Token):
    token: str


class Tokens(_Out):
    tokens: list[Token]


def problem_response(description: str) -> dict:
    return {"description": description, "model": Problem, "content": {"application/problem+json": {}}}


#: every route may answer these (FastAPI(responses=...)); routes add their own (404, 409, 413)
COMMON_RESPONSES = {
    400: problem_response("the request is malformed (a UID, a filter)"),
    401: problem_response("no valid bearer token"),
    403: problem_response("the token lacks the route's role"),
    422: problem_response("the request does not match the schema"),
}
NOT_FOUND = {404: problem_response("no such object")}
CONFLICT = {409: problem_response("refused in the current state (gate, registry, token name)")}
