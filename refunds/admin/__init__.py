"""The Back Office: refund, follow and fix refunds in the Django admin.

Admin classes translate what the user did into one service call and the result into a
message; the rules live in `refunds.services`.
"""

from . import api_tokens, attention, events, items, orders, refund  # noqa: F401  (register the model admins)
