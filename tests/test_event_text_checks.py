"""What `gateway.construct_event` lets through to the database: texts jsonb cannot hold (U+0000,
a lone surrogate, in any escape spelling) and nesting past 32 levels are refused even though
the raw body is only scanned for suspect escapes; a surrogate pair and a clean event pass.
A signed body that cannot be stored as it came is refused, never answered 500.

tests/test_webhook_limits.py covers `\\u0000`, `\\ud800` and 40+ levels through the view."""

import json
import re

import pytest

from refunds import gateway
from refunds.gateway import MAX_NESTING, _json_problem
from refunds.models import ItemState, StripeEvent

from .conftest import TEST_WEBHOOK_SECRET
from .stripe_payloads import body_of, deliver, event, refund_object, refund_object_for, sign
from .webhook_scenarios import states, submitted_refund


def signed_event_with(placeholder_json: str, *, where: str = "value") -> bytes:
    """A refund.updated event's body with the JSON text `placeholder_json` in its metadata: as a
    value, as a key, or in a list."""
    evt = event("refund.updated", refund_object(status="succeeded"))
    evt["data"]["object"]["metadata"] = {
        "value": {"note": "__HERE__"}, "key": {"__HERE__": "x"}, "list": {"notes": ["ok", "__HERE__"]},
    }[where]
    return json.dumps(evt, indent=2).replace('"__HERE__"', placeholder_json).encode()


def construct(body: bytes) -> dict:
    return gateway.construct_event(body, sign(body), TEST_WEBHOOK_SECRET, 300)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- Texts jsonb cannot hold ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('"\\u0000"', "U+0000"),
        ('"before\\u0000after"', "U+0000"),
        ('"\\ud800"', "lone UTF-16 surrogate"),
        ('"\\uD800"', "lone UTF-16 surrogate"),
        ('"\\uDBFF"', "lone UTF-16 surrogate"),
        ('"\\udc00"', "lone UTF-16 surrogate"),
        ('"\\ud83dA"', "lone UTF-16 surrogate"),
        ('"\\ude00\\ud83d"', "lone UTF-16 surrogate"),
    ],
    ids=["nul", "nul-inside", "high", "high-upper-case", "last-high", "low", "high-then-letter", "pair-reversed"],
)
@pytest.mark.parametrize("where", ["value", "key", "list"])
def test_a_signed_body_with_text_jsonb_cannot_hold_is_refused(text, why, where):
    body = signed_event_with(text, where=where)

    with pytest.raises(ValueError, match=re.escape(why)) as refused:
        construct(body)

    assert str(refused.value).startswith("body is not a Stripe event: a text holds ")


@pytest.mark.parametrize(
    ("value", "raw"),
    [("\x00", b'"\\u0000"'), ("\ud800", b'"\\ud800"'), ("\udfff", b'"\\uDFFF"'), ("a\x00", None), ("\ud800", None)],
    ids=["nul", "high", "low-upper-case", "nul-no-raw", "high-no-raw"],
)
def test_json_problem_finds_the_text_whether_or_not_the_raw_body_is_given(value, raw):
    problem = _json_problem({"data": {"object": {"metadata": {"k": [value]}}}}, raw=raw)

    assert problem in ("a text holds the NUL character U+0000", "a text holds a lone UTF-16 surrogate")
    assert ("U+0000" in problem) == ("\x00" in value)


@pytest.mark.parametrize(
    "text", ['"\\ud83d\\ude00"', '"\\uD83D\\uDE00"', '"smile \\ud83d\\ude00!"', '"\\\\u0000 and \\\\ud800"', '"\\u00e9"'],
    ids=["pair", "pair-upper-case", "pair-inside", "escaped-backslashes", "latin"],
)
def test_a_signed_body_with_texts_jsonb_can_hold_is_accepted(text):
    evt = construct(signed_event_with(text))

    assert evt["data"]["object"]["metadata"]["note"] == json.loads(text)


def test_a_clean_stripe_event_is_accepted_as_sent():
    evt = event("refund.updated", refund_object(status="succeeded", metadata={"oms_refund_id": "7"}))
    body = body_of(evt)

    assert construct(body) == evt
    assert _json_problem(evt, raw=body) == "" and _json_problem(evt) == ""


# --- Nesting ----------------------------------------------------------------------------------------


# event → data → object → metadata are four levels; the nested lists add the rest.
@pytest.mark.parametrize(("lists", "refused"), [(MAX_NESTING - 4, False), (MAX_NESTING - 3, True), (200, True)])
@pytest.mark.parametrize("suspect_escape", [False, True], ids=["clean-body", "body-with-a-pair-escape"])
def test_nesting_deeper_than_32_levels_is_refused(lists, refused, suspect_escape):
    evt = event("refund.updated", refund_object(status="succeeded"))
    evt["data"]["object"]["metadata"] = {"deep": "__NEST__", "smile": "__SMILE__"}
    text = json.dumps(evt).replace('"__NEST__"', nested(lists))
    body = text.replace('"__SMILE__"', '"\\ud83d\\ude00"' if suspect_escape else '"smile"').encode()

    if refused:
        with pytest.raises(ValueError, match=f"body is not a Stripe event: nested more than {MAX_NESTING} levels"):
            construct(body)
    else:
        assert construct(body)["data"]["object"]["metadata"]["deep"] == json.loads(nested(lists))


@pytest.mark.parametrize("raw", [None, b"[]", b'"\\u0000"'], ids=["no-raw", "clean-raw", "suspect-raw"])
def test_json_problem_counts_nesting_in_dicts_and_lists(raw):
    def levels(count: int):
        value = {}
        for level in range(count - 1):
            value = [value] if level % 2 else {"k": value}
        return value

    assert _json_problem(levels(MAX_NESTING), raw=raw) == ""
    assert _json_problem(levels(MAX_NESTING + 1), raw=raw) == f"nested more than {MAX_NESTING} levels"


# --- Signed bodies that cannot be stored as they came --------------------------------------------------


@pytest.fixture
def pending_refund(paid_order, back_office_user, fake_stripe):
    return submitted_refund(paid_order.items.all(), back_office_user, stripe_refund_id="re_text_checks")


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_a_signed_body_with_a_number_json_does_not_have_is_refused_with_400(client, pending_refund, token):
    # Python's json reads NaN and Infinity; neither JSON nor jsonb nor SQLite's JSON has them.
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    evt["data"]["object"]["metadata"] = {"note": "__NUMBER__"}
    body = json.dumps(evt).replace('"__NUMBER__"', token).encode()

    response = deliver(client, body=body, signature=sign(body))

    assert response.status_code == 400, response.content
    assert not StripeEvent.objects.exists()
    assert set(states(pending_refund.items.all())) == {ItemState.PAYMENT_REFUND_PENDING}


@pytest.mark.django_db
@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-8-sig"])
def test_a_signed_body_not_in_plain_utf8_is_refused_with_400(client, pending_refund, encoding):
    # json.loads would read UTF-16, UTF-32 and a UTF-8 byte order mark; JSON is UTF-8 (RFC 8259
    # §8.1), and the raw body is stored as it came, so such a body is refused, never a 500.
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    body = json.dumps(evt).encode(encoding)

    response = deliver(client, body=body, signature=sign(body))

    assert response.status_code == 400, response.content
    assert not StripeEvent.objects.exists()
    assert set(states(pending_refund.items.all())) == {ItemState.PAYMENT_REFUND_PENDING}
