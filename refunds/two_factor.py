"""Two-factor login for the Back Office: users who may refund or approve type a TOTP code
(django-otp) after their password when `REFUND_REQUIRE_2FA` is on (DESIGN.md §10).

The admin site uses `BackOfficeLoginForm` (`admin.site.login_form`, set in the project's URLs)
and the login template `admin/refunds/login.html`. The form checks the password first (through
django-axes, which throttles repeated failures), then, for a user who may move money, the code
of one of the user's confirmed TOTP devices (django-otp throttles wrong codes per device).
django-otp's middleware then marks the session verified, and the refund actions check that
too (`refunds.admin.base.second_factor_missing`), whatever the login page was. A user who may
refund but has no device is refused with what to do: `manage.py add_totp_device <username>`.
"""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django_otp import devices_for_user
from django_otp.forms import OTPAuthenticationFormMixin
from django.utils.translation import gettext_lazy as _

from .admin.base import may_move_money
from .conf import app_settings


def second_factor_required(user) -> bool:
    return bool(app_settings.REFUND_REQUIRE_2FA) and user is not None and may_move_money(user)


class BackOfficeLoginForm(OTPAuthenticationFormMixin, AdminAuthenticationForm):
    otp_token = forms.CharField(
        label=_("Authentication code"),
        required=False,
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        help_text=_("The six digits your authenticator app shows; needed by users who may refund or approve."),
    )
    # The user's device is found from the code; no device choice or challenge button is shown.
    otp_device = forms.CharField(required=False, widget=forms.HiddenInput)
    otp_challenge = forms.CharField(required=False, widget=forms.HiddenInput)

    otp_error_messages = {
        **OTPAuthenticationFormMixin.otp_error_messages,
        "token_required": _("Your account may refund: enter the authentication code from your authenticator app."),
        "invalid_token": _("That authentication code is not right (or has expired): enter the one your app shows now."),
    }

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        if not app_settings.REFUND_REQUIRE_2FA:
            for name in ("otp_token", "otp_device", "otp_challenge"):
                del self.fields[name]

    def _chosen_device(self, user):
        """The device the code is checked against: the user's one TOTP device (the form shows
        no device choice; `add_totp_device` gives each user one)."""
        device = super()._chosen_device(user)
        if device is None:
            from django_otp.plugins.otp_totp.models import TOTPDevice

            totp = [d for d in devices_for_user(user, confirmed=True, for_verify=True) if isinstance(d, TOTPDevice)]
            device = totp[0] if len(totp) == 1 else None
        return device

    def clean(self):
        cleaned_data = super().clean()  # the password, through django-axes
        user = self.get_user()
        if second_factor_required(user):
            if not any(devices_for_user(user, confirmed=True)):
                raise forms.ValidationError(
                    _(
                        "Your account may refund, so it needs a second factor, and none is set up. Ask an "
                        "administrator to run `manage.py add_totp_device %(username)s` and add the key "
                        "to your authenticator app."
                    ) % {"username": user.get_username()},
                    code="no_device",
                )
            self.clean_otp(user)
        return cleaned_data
