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


class InvalidAmount(RefundError):
    """An amount typed or sent that is not a positive amount of the order's currency."""


class AlreadyRequested(RefundError):
    """The same request was made before (a form sent twice): `refund` is the refund it made."""

    def __init__(self, message: str, *, refund):
        super().__init__(message)
        self.refund = refund


class ApprovalRefused(RefundError):
    """Dual control: this user may not approve or reject this refund (their own, or no permission)."""


class CaseAlreadyResolved(RefundError):
    pass


class AlertNotDelivered(Exception):
    """An attention alert could not be sent on every channel; the task retries, reconciliation
    sends it later. The message names each channel's error."""


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


class InvalidOrder(RefundError):
    """An order that cannot be taken in as given; `errors` maps each field (dotted for items,
    `items.0.amount`) to what is wrong with it."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items()))


class OrderConflict(RefundError):
    """An order with this reference exists and differs from what was sent."""


class UnknownItem(RefundError):
    """An item id that does not exist, or is not an item of the order named."""
