"""Development tools for the refunds app: demo data, the local Stripe emulator, `stripe_trigger`.

Installed by `refunds_project.settings_dev` only; not part of the `refunds` package a shop installs.
"""
