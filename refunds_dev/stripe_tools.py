"""Stripe calls only the demo and the tests make: pay a PaymentIntent with Stripe's test card,
ask whether the emulator still knows one, sign a webhook payload as Stripe signs it.

Production's door to Stripe is `refunds.gateway`; this is the development app's, through the
same client and the same error translation.
"""

from __future__ import annotations

import stripe

from refunds import gateway


def create_paid_payment_intent(*, amount: int, currency: str, metadata: dict | None = None) -> str:
    """A PaymentIntent paid with Stripe's test card; for the demo seed and integration tests."""
    try:
        intent = gateway.client().v1.payment_intents.create({
            "amount": amount,
            "currency": currency,
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": metadata or {},
        })
    except stripe.StripeError as error:
        raise gateway.translate_error(error) from error
    return intent.id


def payment_intent_exists(payment_intent_id: str) -> bool:
    """Whether Stripe (or the emulator) knows this PaymentIntent; the demo seed checks with it
    that its orders still match the emulator's store."""
    try:
        gateway.client().v1.payment_intents.retrieve(payment_intent_id)
    except stripe.InvalidRequestError as error:
        if error.http_status == 404:
            return False
        raise gateway.translate_error(error) from error
    except stripe.StripeError as error:
        raise gateway.translate_error(error) from error
    return True


def sign_payload(payload: str, secret: str, *, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe would send with `payload` (its v1 HMAC-SHA256 scheme).

    For `manage.py stripe_trigger` and tests: https://docs.stripe.com/webhooks#verify-manually
    """
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
