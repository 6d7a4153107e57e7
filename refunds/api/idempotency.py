"""`Idempotency-Key` on refund requests (DESIGN.md §8), as Stripe's own API has it: the first
answer is stored with the key; the same key with the same request gets that answer again and
makes no second refund; with another request, 409. Keys are the token's own.

Only a success is stored. A refused request (4xx) writes nothing, its key included, so the
client may fix the cause and send the same key again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from django.db import IntegrityError, transaction
from rest_framework.response import Response

from ..models import ApiIdempotencyKey, ApiToken
from .problems import Problem

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def check_key(key: str) -> str:
    if not (0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()):
        raise Problem(
            "invalid-request", f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters (a UUID will do)."
        )
    return key


def request_hash(request) -> str:
    """The method, path and parsed JSON body: the same JSON with other spacing or key order is the same request."""
    canonical = json.dumps([request.method, request.path, request.data], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def answer_once(*, token: ApiToken, key: str, fingerprint: str, answer: Callable[[], Response],
                refund_of: Callable[[Response], int | None]) -> Response:
    """`answer()` once per (token, key); a repeat replays the stored answer.

    The key's row is inserted first, in the same transaction as the refund: a second request with
    the same key waits on the unique index until the first commits (then replays its answer) or
    rolls back (then runs itself). Both never run at once, so one refund and one Stripe call.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = ApiIdempotencyKey.objects.create(
                    token=token, key=key, request_hash=fingerprint, response_status=0, response_body={}
                )
        except IntegrityError:
            record = ApiIdempotencyKey.objects.get(token=token, key=key)
            if record.request_hash != fingerprint:
                raise Problem(
                    "idempotency-key-reused",
                    f"{HEADER} {key!r} was used with another request (another order or body); "
                    "use a new key for a new request.",
                ) from None
            response = Response(record.response_body, status=record.response_status)
            response["Idempotent-Replayed"] = "true"
            return response
        response = answer()  # a RefundError rolls the key back with everything else
        record.response_status = response.status_code
        record.response_body = response.data
        record.refund_id = refund_of(response)
        record.save(update_fields=["response_status", "response_body", "refund"])
        return response
