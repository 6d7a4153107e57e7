import factory
from django.contrib.auth import get_user_model

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
    order = OrderFactory(**order_fields)
    for amount in amounts:
        OrderItemFactory(order=order, amount=amount)
    return order
