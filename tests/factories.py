import factory
from django.contrib.auth import get_user_model

from refunds import services
from refunds.models import Order, OrderItem


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"backoffice{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@shop.example")
    is_staff = True
    password = factory.django.Password("secret-password")


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    reference = factory.Sequence(lambda n: f"DE--{1001 + n}")
    customer_email = factory.Sequence(lambda n: f"customer{n}@example.com")
    currency = "eur"
    stripe_payment_intent_id = factory.Sequence(lambda n: f"pi_test{n:08d}")
    shipping_amount = 495


class OrderItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderItem

    order = factory.SubFactory(OrderFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Sequence(lambda n: f"Item {n}")
    amount = 1000


def paid_order_with_items(*amounts: int, **order_fields) -> Order:
    """A paid order with one item per amount, taken in as every order is: `services.create_order`
    (the REST API's and the demo's way). Unset fields come from OrderFactory's sequences."""
    defaults = OrderFactory.build(**order_fields)
    numbers = [OrderItemFactory._meta.next_sequence() for _ in amounts]  # SKUs as OrderItemFactory names them
    order, created = services.create_order(
        reference=defaults.reference,
        currency=defaults.currency,
        payment_intent=defaults.stripe_payment_intent_id,
        customer_email=defaults.customer_email,
        shipping_amount=defaults.shipping_amount,
        amount_captured=defaults.amount_captured,
        items=[services.ItemLine(sku=f"SKU-{n:05d}", name=f"Item {n}", amount=amount) for n, amount in zip(numbers, amounts)],
    )
    assert created, f"{defaults.reference} exists already"
    if "created_at" in order_fields:
        Order.objects.filter(pk=order.pk).update(created_at=order_fields["created_at"])
        order.refresh_from_db()
    return order


def stored_order(*amounts: int, **order_fields) -> Order:
    """An order as it may sit in the database but `create_order` refuses to take in (unpaid, an
    unknown currency, an item of 0, no item): for tests of how the services treat such data."""
    order = OrderFactory(**order_fields)
    for amount in amounts:
        OrderItemFactory(order=order, amount=amount)
    return order
