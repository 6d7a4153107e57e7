"""The production WSGI application: Django, with Stripe's webhook deliveries taken before
Django's request stack (refunds/intake.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "refunds_project.settings")
application = get_wsgi_application()

from refunds.intake import with_webhook_intake  # noqa: E402 — needs the settings loaded above

application = with_webhook_intake(application)
