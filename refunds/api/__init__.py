"""The REST API (DESIGN.md §8): orders in, refunds out, for shops in any language.

    tokens          API tokens: issued once, stored hashed, revoked in the admin
    authentication  `Authorization: Bearer <token>`, acting with the token's user's permissions
    permissions     one Django permission per endpoint
    throttling      requests per token (REFUND_API_THROTTLE_RATE), 429 with Retry-After
    problems        every error as application/problem+json (RFC 9457)
    idempotency     `Idempotency-Key` on refund requests: the first answer, stored and replayed
    serializers     the JSON shapes, which the OpenAPI schema is built from
    views, urls     each view parses, calls one service, and shapes the answer

Tokens bypass the Back Office's second factor (REFUND_REQUIRE_2FA) by design: a token is a
machine's credential, kept in the shop's secret store and revocable at once in the admin.
"""
