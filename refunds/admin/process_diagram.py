"""The refund process as a picture, as Spryker's Back Office draws its OMS process: the six
states, the transitions between them (read from the model's FSM, so the picture cannot drift
from the code), the item's current state marked. Rendered as inline SVG by a template, so it
needs no network and no JavaScript."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext

from ..models import ItemState, OrderItem

BOX_W, BOX_H, GAP, MARGIN = 196, 44, 120, 10
TOP, BOTTOM = 40, 220  # y of the happy path's row and of the failure row
WIDTH = MARGIN * 2 + 4 * BOX_W + 3 * GAP
HEIGHT = BOTTOM + BOX_H + 36


def _column_x(column: int) -> int:
    return MARGIN + column * (BOX_W + GAP)


# The happy path left to right, the failure state below, between "pending" and "succeeded";
# dual control's "awaiting approval" below "captured", on the failure state's row.
POSITIONS = {
    ItemState.PAYMENT_REFUND_AWAITING_APPROVAL: (_column_x(0), BOTTOM),
    ItemState.PAYMENT_CAPTURED: (_column_x(0), TOP),
    ItemState.PAYMENT_REFUND_PENDING: (_column_x(1), TOP),
    ItemState.PAYMENT_REFUND_SUCCEEDED: (_column_x(2), TOP),
    ItemState.PAYMENT_REFUNDED: (_column_x(3), TOP),
    ItemState.PAYMENT_REFUND_FAILED: ((_column_x(1) + _column_x(2)) // 2, BOTTOM),
}
# A label longer than a box's width gets a wider box.
WIDTHS = {ItemState.PAYMENT_REFUND_AWAITING_APPROVAL: 250}


@dataclass(frozen=True)
class Node:
    state: str
    label: str
    x: int
    y: int
    current: bool

    w: int = BOX_W
    h: int = BOX_H

    @property
    def cx(self) -> int:
        return self.x + self.w // 2

    @property
    def cy(self) -> int:
        return self.y + self.h // 2

    @property
    def caption_y(self) -> int:
        """Where "current state" is written: above the top row, below the bottom row."""
        return self.y - 10 if self.y == TOP else self.y + self.h + 20

    @property
    def caption(self) -> str:
        return ("▼ " if self.y == TOP else "▲ ") + gettext("current state")


@dataclass(frozen=True)
class Edge:
    name: str
    source: str
    target: str
    d: str  # SVG path
    label_x: int
    label_y: int
    anchor: str  # text-anchor of the label
    available: bool  # leaves the current state


def _line(x0, y0, x1, y1) -> str:
    return f"M{x0},{y0} L{x1},{y1}"


def _at(x0, y0, x1, y1, t):
    return round(x0 + (x1 - x0) * t), round(y0 + (y1 - y0) * t)


def _routes() -> dict[tuple[str, str], tuple[str, int, int, str]]:
    """Hand-laid routes for the five-state process: (path, label x, label y, text-anchor)."""
    s = ItemState
    captured, pending, succeeded, refunded = (POSITIONS[state] for state in (
        s.PAYMENT_CAPTURED, s.PAYMENT_REFUND_PENDING, s.PAYMENT_REFUND_SUCCEEDED, s.PAYMENT_REFUNDED))
    failed = POSITIONS[s.PAYMENT_REFUND_FAILED]
    mid_y, top_bottom = TOP + BOX_H // 2, TOP + BOX_H
    routes = {}

    def straight(source, target, left, right):
        routes[(source, target)] = (_line(left, mid_y, right, mid_y), (left + right) // 2, mid_y - 8, "middle")

    straight(s.PAYMENT_CAPTURED, s.PAYMENT_REFUND_PENDING, captured[0] + BOX_W, pending[0])
    straight(s.PAYMENT_REFUND_PENDING, s.PAYMENT_REFUND_SUCCEEDED, pending[0] + BOX_W, succeeded[0])
    straight(s.PAYMENT_REFUND_SUCCEEDED, s.PAYMENT_REFUNDED, succeeded[0] + BOX_W, refunded[0])

    # Two parallel lines between each upper state and "failed": the outer one goes up.
    offset = 18
    for upper, side in ((pending, -1), (succeeded, +1)):
        upper_state = s.PAYMENT_REFUND_PENDING if side < 0 else s.PAYMENT_REFUND_SUCCEEDED
        top_x = upper[0] + BOX_W // 2 - side * 20
        bottom_x = failed[0] + BOX_W // 2 + side * 60
        outer = (bottom_x + side * offset, BOTTOM, top_x + side * offset, top_bottom)
        inner = (top_x - side * offset, top_bottom, bottom_x - side * offset, BOTTOM)
        ox, oy = _at(*outer, 0.5)
        routes[(s.PAYMENT_REFUND_FAILED, upper_state)] = (
            _line(*outer), ox + side * 10, oy, "start" if side > 0 else "end")
        ix, iy = _at(*inner, 0.3 if side < 0 else 0.7)
        routes[(upper_state, s.PAYMENT_REFUND_FAILED)] = (
            _line(*inner), ix - side * 10, iy, "start" if side < 0 else "end")

    # "refunded" can still fail (Stripe may decline a refund it reported succeeded): down and back.
    down_x, row_y = refunded[0] + BOX_W // 2, BOTTOM + BOX_H // 2
    routes[(s.PAYMENT_REFUNDED, s.PAYMENT_REFUND_FAILED)] = (
        f"M{down_x},{top_bottom} L{down_x},{row_y} L{failed[0] + BOX_W},{row_y}",
        (down_x + failed[0] + BOX_W) // 2, row_y - 8, "middle",
    )
    _approval_routes(routes, captured, pending, failed, top_bottom)
    return routes


def _approval_routes(routes, captured, pending, failed, top_bottom) -> None:
    """Dual control: down from "captured" and across from "failed" to "awaiting approval", up
    to "pending" when approved, and back where the item came from when rejected."""
    s = ItemState
    awaiting = POSITIONS[s.PAYMENT_REFUND_AWAITING_APPROVAL]
    awaiting_w = WIDTHS[s.PAYMENT_REFUND_AWAITING_APPROVAL]
    down_x, up_x = captured[0] + 30, captured[0] + 140
    middle_y = (top_bottom + BOTTOM) // 2
    routes[(s.PAYMENT_CAPTURED, s.PAYMENT_REFUND_AWAITING_APPROVAL)] = (
        _line(down_x, top_bottom, down_x, BOTTOM), down_x + 6, middle_y - 22, "start")
    routes[(s.PAYMENT_REFUND_AWAITING_APPROVAL, s.PAYMENT_CAPTURED)] = (
        _line(up_x, BOTTOM, up_x, top_bottom), up_x + 6, middle_y + 30, "start")
    start = (awaiting[0] + awaiting_w - 30, BOTTOM)
    end = (pending[0] + 24, top_bottom)
    label_x, label_y = _at(*start, *end, 0.3)
    routes[(s.PAYMENT_REFUND_AWAITING_APPROVAL, s.PAYMENT_REFUND_PENDING)] = (
        _line(*start, *end), label_x + 8, label_y + 12, "start")
    left, right = awaiting[0] + awaiting_w, failed[0]
    upper, lower = BOTTOM + 12, BOTTOM + BOX_H - 12
    routes[(s.PAYMENT_REFUND_FAILED, s.PAYMENT_REFUND_AWAITING_APPROVAL)] = (
        _line(right, upper, left, upper), (left + right) // 2, upper - 6, "middle")
    routes[(s.PAYMENT_REFUND_AWAITING_APPROVAL, s.PAYMENT_REFUND_FAILED)] = (
        _line(left, lower, right, lower), (left + right) // 2, lower + 16, "middle")


ROUTES = _routes()


def _fallback_route(source: Node, target: Node) -> tuple[str, int, int, str]:
    """A straight line for a transition the layout does not know (a state added later)."""
    return _line(source.cx, source.cy, target.cx, target.cy), (source.cx + target.cx) // 2, (source.cy + target.cy) // 2, "middle"


def diagram(current_state: str) -> dict:
    """Nodes and edges of the refund process, for `admin/refunds/orderitem/process_diagram.html`."""
    nodes = {}
    for index, (state, label) in enumerate(ItemState.choices):
        x, y = POSITIONS.get(state, (_column_x(index % 4), BOTTOM + BOX_H + 40))
        nodes[state] = Node(
            state=state, label=label, x=x, y=y, current=state == current_state, w=WIDTHS.get(state, BOX_W),
        )

    field = OrderItem._meta.get_field("state")
    edges = []
    for transition in sorted(field.get_all_transitions(OrderItem), key=lambda t: (t.name, t.source)):
        # A target decided at run time (reject_refund: back where the item was) is one edge
        # per state it may return.
        targets = getattr(transition.target, "allowed_states", None) or [transition.target]
        for target in targets:
            if transition.source not in nodes or target not in nodes:
                continue  # "*" / "+" sources are not used by this process
            d, label_x, label_y, anchor = ROUTES.get(
                (transition.source, target), _fallback_route(nodes[transition.source], nodes[target]),
            )
            edges.append(Edge(
                name=transition.name, source=transition.source, target=target, d=d,
                label_x=label_x, label_y=label_y, anchor=anchor, available=transition.source == current_state,
            ))
    current = nodes.get(current_state)
    return {
        "width": WIDTH,
        "height": max(HEIGHT, max(node.y + node.h + 36 for node in nodes.values())),
        "nodes": list(nodes.values()),
        "edges": edges,
        "current": current,
    }
