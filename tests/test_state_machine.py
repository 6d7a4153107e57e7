"""The OMS refund process on one item: which transitions may fire from which state."""

import pytest
from django_fsm import InvalidResultState, TransitionNotAllowed

from refunds.models import ItemState, OrderItem

from .factories import OrderItemFactory

pytestmark = pytest.mark.django_db

# transition -> (source states, target state), as DESIGN.md §1 defines the process
PROCESS = {
    "start_refund": (
        {ItemState.PAYMENT_CAPTURED, ItemState.PAYMENT_REFUND_FAILED},
        ItemState.PAYMENT_REFUND_PENDING,
    ),
    "refund_succeeded": (
        {ItemState.PAYMENT_REFUND_PENDING, ItemState.PAYMENT_REFUND_FAILED},
        ItemState.PAYMENT_REFUND_SUCCEEDED,
    ),
    "refund_failed": (
        {ItemState.PAYMENT_REFUND_PENDING, ItemState.PAYMENT_REFUND_SUCCEEDED, ItemState.PAYMENT_REFUNDED},
        ItemState.PAYMENT_REFUND_FAILED,
    ),
    "confirm_refund": ({ItemState.PAYMENT_REFUND_SUCCEEDED}, ItemState.PAYMENT_REFUNDED),
    # Dual control (DESIGN.md §9)
    "request_approval": (
        {ItemState.PAYMENT_CAPTURED, ItemState.PAYMENT_REFUND_FAILED},
        ItemState.PAYMENT_REFUND_AWAITING_APPROVAL,
    ),
    "approve_refund": ({ItemState.PAYMENT_REFUND_AWAITING_APPROVAL}, ItemState.PAYMENT_REFUND_PENDING),
    "reject_refund": ({ItemState.PAYMENT_REFUND_AWAITING_APPROVAL}, ItemState.PAYMENT_REFUND_FAILED),
}
# reject_refund returns the item where it was before the request; the test sends it to "failed".
ARGUMENTS = {"reject_refund": {"back_to": ItemState.PAYMENT_REFUND_FAILED}}
CASES = [(name, state) for name in PROCESS for state in ItemState]


def item_in(state: ItemState) -> OrderItem:
    item = OrderItemFactory()
    OrderItem.objects.filter(pk=item.pk).update(state=state)
    return OrderItem.objects.get(pk=item.pk)


@pytest.mark.parametrize(("transition", "state"), CASES, ids=[f"{t}-from-{s.value}" for t, s in CASES])
def test_transition_fires_from_its_sources_and_is_refused_from_every_other_state(transition, state):
    sources, target = PROCESS[transition]
    item = item_in(state)
    before = item.state_changed_at

    if state in sources:
        getattr(item, transition)(**ARGUMENTS.get(transition, {}))
        assert item.state == target
        assert item.state_changed_at > before
    else:
        with pytest.raises(TransitionNotAllowed):
            getattr(item, transition)(**ARGUMENTS.get(transition, {}))
        assert item.state == state
        assert item.state_changed_at == before


def test_a_new_item_starts_paid():
    assert OrderItemFactory().state == ItemState.PAYMENT_CAPTURED


def test_the_state_cannot_be_assigned_directly():
    item = OrderItemFactory()
    with pytest.raises(AttributeError):
        item.state = ItemState.PAYMENT_REFUNDED
    item.refresh_from_db()
    assert item.state == ItemState.PAYMENT_CAPTURED


def test_refresh_from_db_reads_the_protected_state():
    item = OrderItemFactory()
    OrderItem.objects.filter(pk=item.pk).update(state=ItemState.PAYMENT_REFUND_PENDING)
    item.refresh_from_db()
    assert item.state == ItemState.PAYMENT_REFUND_PENDING


def test_labels_are_the_oms_names():
    assert [state.label for state in ItemState] == [
        "payment captured",
        "payment refund pending",
        "payment refund succeeded",
        "payment refund failed",
        "payment refunded",
        "payment refund awaiting approval",
    ]


@pytest.mark.parametrize("before", [ItemState.PAYMENT_CAPTURED, ItemState.PAYMENT_REFUND_FAILED])
def test_a_rejection_returns_the_item_where_it_was(before):
    item = item_in(before)
    item.request_approval()

    item.reject_refund(back_to=before)

    assert item.state == before


def test_a_rejection_cannot_send_an_item_anywhere_else():
    item = item_in(ItemState.PAYMENT_REFUND_AWAITING_APPROVAL)

    with pytest.raises(InvalidResultState):
        item.reject_refund(back_to=ItemState.PAYMENT_REFUNDED)
