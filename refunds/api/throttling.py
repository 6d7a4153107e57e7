"""Requests per token (REFUND_API_THROTTLE_RATE); over the rate: 429 with Retry-After."""

from rest_framework.throttling import SimpleRateThrottle

from ..conf import app_settings


class PerTokenRateThrottle(SimpleRateThrottle):
    scope = "refunds_api_token"

    def get_rate(self):
        # Read at each request (not at import): a settings change applies, as in refunds.conf.
        return app_settings.REFUND_API_THROTTLE_RATE

    def __init__(self):
        # SimpleRateThrottle parses the rate in its __init__; ours is read there too.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def get_cache_key(self, request, view):
        token = request.auth
        if token is None:
            return None  # no token: refused by authentication, nothing to count
        return self.cache_format % {"scope": self.scope, "ident": token.pk}
