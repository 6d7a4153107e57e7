"""Cases a person must look at (DESIGN.md §9): a hook for now.

The needs-attention queue of issue 11 (the `AttentionCase` model, the "Needs attention" page,
alerts) replaces this module with its own `open_case` of the same signature; until it lands,
a case is a log line at ERROR that names its kind, refund and order, so nothing is silent.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def open_case(*, kind: str, refund=None, order=None, detail: str = "") -> None:
    """Open a case of `kind` (`possible_double_refund`, `mismatched_refund`, `event_error`, …)."""
    if order is None and refund is not None:
        order = refund.order
    logger.error(
        "attention case %s: refund %s, order %s: %s",
        kind,
        f"#{refund.pk}" if refund is not None else "-",
        order.reference if order is not None else "-",
        detail,
    )
