"""The Stripe webhook outside Django's request stack: a WSGI wrapper for the production server.

    # wsgi.py
    from django.core.wsgi import get_wsgi_application
    from refunds.intake import with_webhook_intake

    application = with_webhook_intake(get_wsgi_application())

A POST to the webhook's URL is answered by `views.answer_delivery`, the same code as the
Django view, without the middleware, URL routing, request and response objects around it:
through gunicorn these cost about as much as the bare database writes of an event
(bench/webhook.py, bench/README.md). Every other request, the webhook's other methods
included, goes to Django as before.

What the webhook gives up is what it does not use: sessions, CSRF (the view is exempt),
authentication, locale, messages, clickjacking headers, and the host project's own middleware,
which does not see webhook deliveries on this path. A delivery Django's middleware would refuse
(a Host not in ALLOWED_HOSTS, plain HTTP under SECURE_SSL_REDIRECT) is left to Django, which
refuses it as before. What it keeps: Django's
`request_started` and `request_finished` signals (which close stale database connections and
reset the query log), `got_request_exception` for an error of ours (error reporters listen to
it), and the same answers, logs, limits and rules (DESIGN.md §3 and §10). Without the wrapper
the Django view answers the same URL the same way.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.urls import reverse

from . import views

logger = logging.getLogger("django.request")


class WebhookIntake:
    """The sender of the request signals for deliveries taken here."""


def with_webhook_intake(application, *, path: str | None = None):
    """`application`, with POSTs to the Stripe webhook (`path`, by default the URL of
    `stripe-webhook` in the project's URLconf, such as "/stripe/webhook/") answered here."""
    path = path or reverse("stripe-webhook")

    def intake(environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != path:
            return application(environ, start_response)
        request = WSGIRequest(environ)
        if not _let_through(request):
            return application(environ, start_response)  # Django answers: 400, or the redirect to https
        return deliver(request, start_response)

    intake.webhook_path = path
    return intake


def _let_through(request: WSGIRequest) -> bool:
    """What Django's middleware would refuse before the view is left to Django: a Host not in
    ALLOWED_HOSTS (400), and plain HTTP under SECURE_SSL_REDIRECT (the redirect to https)."""
    try:
        request.get_host()
    except (DisallowedHost, KeyError):
        return False
    return not (settings.SECURE_SSL_REDIRECT and not request.is_secure())


def deliver(request: WSGIRequest, start_response) -> list[bytes]:
    """Answer one delivery as the Django view would."""
    environ = request.META
    signals.request_started.send(sender=WebhookIntake, environ=environ)
    finished = _Finished([])
    try:
        answer = views.answer_delivery(
            read=request.read,  # Django's LimitedStream: never past the declared length
            declared_length=environ.get("CONTENT_LENGTH"),
            signature=environ.get("HTTP_STRIPE_SIGNATURE", ""),
            remote=environ.get("REMOTE_ADDR", "?"),
        )
    except Exception:  # noqa: BLE001 — answered 500 as Django would, so Stripe delivers again
        logger.exception("Internal Server Error: %s", environ.get("PATH_INFO"))
        signals.got_request_exception.send(sender=WebhookIntake, request=None)
        answer = views.Answer(500, {"error": "internal error"})
    body = json.dumps(answer.body).encode()
    start_response(
        f"{answer.status} {HTTPStatus(answer.status).phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
         ("X-Content-Type-Options", "nosniff")],
    )
    finished.append(body)
    return finished


class _Finished(list):
    """The response body; the server calls close() once it is sent, and Django's
    `request_finished` goes out then, as after a Django response."""

    def close(self) -> None:
        signals.request_finished.send(sender=WebhookIntake)
