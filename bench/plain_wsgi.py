"""Django's own WSGI application, without the webhook intake of refunds_project/wsgi.py: what
`bench/webhook.py --gunicorn --plain-django` serves, to measure what the intake saves."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "refunds_project.settings")
application = get_wsgi_application()
