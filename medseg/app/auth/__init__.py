"""Who may call the HTTP API: principals, roles, API tokens and OIDC/JWT bearer tokens.

Every route except the open ones (``[auth] open_routes``, by default ``/health``, ``/ready`` and
``/metrics``) needs ``Authorization: Bearer <token>``, where the token is either

* an **API token** made with ``medseg tokens create`` (stored as its SHA-256 only; listed and
  revoked with ``medseg tokens list`` / ``revoke``; each change is an audit event), or
* a **JWT** from the hospital's identity provider (OIDC), checked against the configured
  issuer, audience and JWKS (a local file, or the provider's JWKS URL); its roles come from a
  claim (``roles`` by default), through an optional mapping of group names to roles.

Roles (``Role``), each a set of routes; a principal holds one or more:

| role | may |
|---|---|
| viewer | read studies, models, reviews, monitoring, alerts |
| radiologist | submit reviews, read the re-review worklist (and what a viewer reads) |
| ml-engineer | reference, shadow, promote, roll back models (and what a viewer reads) |
| auditor | read and export the audit trail |
| admin | create, list and revoke API tokens |

A missing or invalid token is 401 (``WWW-Authenticate: Bearer``), a valid one without the role
403, both as problem details and both audited (``api.refused``). The principal
(``token:<name>`` or ``oidc:<issuer>#<subject>``) is the actor of every event the call causes.
"""
