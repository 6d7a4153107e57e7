"""Development settings: the demo (`make run`) and the tests.

The service's settings plus the development app (`refunds_dev`: demo seeding, the Stripe
emulator runner, `stripe_trigger`), with DEBUG turned on explicitly (unless DJANGO_DEBUG says
otherwise); production's settings keep it off. Production runs `refunds_project.settings`,
which installs none of it.
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")

from .settings import *  # noqa: E402,F403
from .settings import INSTALLED_APPS  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "refunds_dev"]
