"""The project's exception family. Messages of `RefundError` are safe to show a Back Office user."""


class RefundError(Exception):
    """A refund request that cannot be honoured; nothing was changed."""


class NothingToRefund(RefundError):
    pass


class ItemNotRefundable(RefundError):
    pass


class OrderNotRefundable(RefundError):
    pass


class OverRefund(RefundError):
    pass


class StripeGatewayError(Exception):
    """Stripe could not be asked, or said no. `message` is Stripe's own words when it gave any."""

    def __init__(self, message: str, *, code: str = "", http_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status


class StripeRetryableError(StripeGatewayError):
    """Connection, timeout, rate limit, idempotency conflict or 5xx: try again with the same key."""


class StripeFinalError(StripeGatewayError):
    """Invalid request, card or authentication error: trying again cannot help."""
