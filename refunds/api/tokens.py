"""API tokens: 32 random bytes shown once, stored as a SHA-256 hash (`models.ApiToken`)."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from ..models import ApiToken

PREFIX = "rfd_"
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION_SECONDS = 60


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_api_token(*, user, name: str = "") -> tuple[ApiToken, str]:
    """A new token for `user`; returns the row and the token itself, which is stored nowhere."""
    raw = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=raw[:12], key_hash=hash_token(raw))
    return token, raw


def find_token(raw: str) -> ApiToken | None:
    """The active token `raw` names, with its user; None if unknown or revoked."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=hash_token(raw), revoked_at__isnull=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() >= LAST_USED_RESOLUTION_SECONDS:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def revoke_tokens(tokens) -> int:
    """Revoke the given tokens (a queryset) from now on; returns how many were active."""
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
