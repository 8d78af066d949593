"""The one exception tree of the signer; every error a client can see is a ``SignerError``.

::

    SignerError (500 internal)
    ├── BadRequest (400 bad_request)
    │   ├── MalformedJson (400 malformed_json)
    │   ├── UnknownField (400 unknown_field)
    │   ├── InvalidField (400 invalid_field)
    │   └── ReservedClaim (400 reserved_claim)
    ├── Unauthenticated (401 unauthenticated)
    ├── Forbidden (403 forbidden)
    │   └── ArtifactRing (403 artifact_ring)
    ├── NotFound (404 not_found)
    │   ├── UnknownRing (404 unknown_ring)
    │   └── UnknownKey (404 unknown_key)
    ├── MethodNotAllowed (405 method_not_allowed)
    ├── Conflict (409 conflict)
    │   └── KeyNotActive (409 key_not_active)
    ├── PayloadTooLarge (413 body_too_large)
    ├── Unprocessable (422 unprocessable)        well-formed, but refused by a policy (a profile)
    ├── RateLimited (429 rate_limited)           carries ``retry_after`` seconds
    ├── UnsupportedMediaType (415 unsupported_media_type)
    ├── ConfigError (500 config_error)           raised at start-up, never over HTTP
    ├── KeyProofFailed (500 key_proof_failed)    a key on the token is not provably non-exportable
    ├── HsmError (500 hsm_error)
    │   └── HsmUnavailable (503 hsm_unavailable)
    └── StoreError (500 store_error)
        └── StoreUnavailable (503 store_unavailable)

Each class carries its problem ``code`` and HTTP ``status``; ``signer.problems`` renders them.
"""

from __future__ import annotations

from typing import ClassVar


class SignerError(Exception):
    """Root of every error the signer raises on purpose."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class BadRequest(SignerError):
    """The request is not acceptable as sent."""

    code = "bad_request"
    status = 400
    title = "Bad request"


class MalformedJson(BadRequest):
    """The body is not a JSON document of the expected shape."""

    code = "malformed_json"
    title = "Malformed JSON"


class UnknownField(BadRequest):
    """The body has a member the endpoint does not define."""

    code = "unknown_field"
    title = "Unknown field"


class InvalidField(BadRequest):
    """A member has the wrong type or an out-of-range value."""

    code = "invalid_field"
    title = "Invalid field"


class ReservedClaim(BadRequest):
    """The caller tried to set a claim the signer owns (``iat``, ``exp``)."""

    code = "reserved_claim"
    title = "Reserved claim"


class Unauthenticated(SignerError):
    """No credential, or one that matches no principal."""

    code = "unauthenticated"
    status = 401
    title = "Unauthenticated"


class Forbidden(SignerError):
    """The principal lacks the permission for this resource."""

    code = "forbidden"
    status = 403
    title = "Forbidden"


class ArtifactRing(Forbidden):
    """A ring that signs artifacts was asked for a JWT (one key, one purpose)."""

    code = "artifact_ring"
    title = "Ring signs artifacts only"


class NotFound(SignerError):
    """No such resource."""

    code = "not_found"
    status = 404
    title = "Not found"


class UnknownRing(NotFound):
    """No ring of that name is configured."""

    code = "unknown_ring"
    title = "Unknown ring"


class UnknownKey(NotFound):
    """No key with that kid."""

    code = "unknown_key"
    title = "Unknown key"


class MethodNotAllowed(SignerError):
    """The resource exists but not with this method."""

    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"


class Conflict(SignerError):
    """The request conflicts with the current state."""

    code = "conflict"
    status = 409
    title = "Conflict"


class KeyNotActive(Conflict):
    """The ring has no key that may sign right now."""

    code = "key_not_active"
    title = "No active key"


class PayloadTooLarge(SignerError):
    """The body is over the configured limit."""

    code = "body_too_large"
    status = 413
    title = "Payload too large"


class Unprocessable(SignerError):
    """The request is well-formed but a policy refuses its content (e.g. a signing profile)."""

    code = "unprocessable"
    status = 422
    title = "Unprocessable request"


class RateLimited(SignerError):
    """The principal is over its configured request rate."""

    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UnsupportedMediaType(SignerError):
    """The body is not ``application/json``."""

    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class ConfigError(SignerError):
    """The configuration is invalid; raised at start-up with the offending key named."""

    code = "config_error"
    title = "Configuration error"


class KeyProofFailed(SignerError):
    """A key's attributes do not prove it was generated on the token and never left it."""

    code = "key_proof_failed"
    title = "Key proof failed"


class HsmError(SignerError):
    """The HSM refused or failed an operation."""

    code = "hsm_error"
    title = "HSM error"


class HsmUnavailable(HsmError):
    """The HSM cannot be reached or its session is lost."""

    code = "hsm_unavailable"
    status = 503
    title = "HSM unavailable"


class StoreError(SignerError):
    """The state store refused or failed an operation."""

    code = "store_error"
    title = "State store error"


class StoreUnavailable(StoreError):
    """The state store cannot be reached."""

    code = "store_unavailable"
    status = 503
    title = "State store unavailable"
