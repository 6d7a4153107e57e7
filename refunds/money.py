"""Money in integer minor units, as Stripe's `amount`; display only happens here.

Exponents follow Stripe's list of zero- and three-decimal currencies:
https://docs.stripe.com/currencies#zero-decimal
"""

import re
from decimal import Decimal

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, get_currency_symbol
from django.utils.translation import get_language, gettext, to_locale

ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}
SYMBOLS = {"eur": "€", "usd": "$", "gbp": "£", "jpy": "¥", "chf": "CHF ", "pln": "zł ",
           "sek": "SEK ", "dkk": "DKK ", "nok": "NOK ", "czk": "CZK ", "cad": "CA$",
           "aud": "A$", "nzd": "NZ$", "huf": "HUF ", "ron": "RON ", "bgn": "BGN "}
# The currencies this OMS accepts: Stripe's settlement currencies in Europe and beyond.
CURRENCIES = frozenset(SYMBOLS) | ZERO_DECIMAL | THREE_DECIMAL | {
    "hkd", "sgd", "mxn", "brl", "inr", "zar", "ils", "thb", "myr", "php", "idr", "aed", "try",
}


def is_known_currency(currency: str) -> bool:
    return currency in CURRENCIES


def exponent(currency: str) -> int:
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def format_money(amount: int, currency: str) -> str:
    """`3500, "eur"` -> `"€35.00"` in English, `"€35,00"` in German: Babel's symbols and
    separators for the active language, Stripe's number of decimals for the currency.

    The symbol stays in front in every language (the Back Office's one style, `€1.234,56`), and
    a symbol made of letters gets a no-break space before the digits (`CHF 35.00`), as CLDR's
    currency spacing asks; Babel leaves that spacing to the caller.
    """
    places = exponent(currency)
    code = currency.upper()
    locale = babel_locale()
    value = Decimal(amount).scaleb(-places)
    symbol = get_currency_symbol(code, locale=locale)
    spacing = "\u00a0" if symbol[-1:].isalpha() else ""
    pattern = f"¤{spacing}#,##0" + (f".{'0' * places}" if places else "")
    return format_currency(value, code, format=pattern, locale=locale, currency_digits=False)


def babel_locale() -> str:
    """The active language as a Babel locale (`de`, `en_US`); English when none is active."""
    language = get_language() or "en-us"
    try:
        return str(Locale.parse(to_locale(language)))
    except (ValueError, UnknownLocaleError):
        return "en_US"


def major_units(amount: int, currency: str) -> str:
    """`1250, "eur"` -> `"12.50"`, `1200, "jpy"` -> `"1200"`, `1234, "kwd"` -> `"1.234"`: exact,
    no symbol, no grouping (what a finance export or an amount field holds)."""
    places = exponent(currency)
    return f"{Decimal(amount).scaleb(-places):.{places}f}"


class AmountParseError(ValueError):
    """A typed amount that is not an amount of the currency; the message says how to write it."""


# Digits with optional comma thousands separators (groups of three), then an optional decimal
# point and digits. Nothing else: no sign, no exponent, no spaces inside, no decimal comma.
_AMOUNT = re.compile(r"(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<fraction>\d*))?")


def parse_major_units(text: str, currency: str) -> int:
    """What a Back Office user typed, in major units of `currency`, as integer minor units.

    Exact (no float): `12.5` and `12.50` are 1250 for EUR; `1,200` and `1200` are 1200 for JPY.
    Refused, with a message saying how to write it instead: more decimals than the currency has
    (`12.505` EUR, `12.5` JPY), a decimal comma (`12,50`), signs, letters, zero.
    """
    code = currency.upper()
    places = exponent(currency)
    example = major_units(1250 * 10**places if places == 0 else 1250 * 10 ** (places - 2), currency)
    cleaned = (text or "").strip()
    symbol = SYMBOLS.get(currency, "").strip()
    for prefix in filter(None, (symbol, code, currency)):
        if cleaned.upper().startswith(prefix.upper()):
            cleaned = cleaned[len(prefix):].strip()
            break
    if not cleaned:
        raise AmountParseError(gettext("Enter an amount in %(code)s, for example %(example)s.") % {"code": code, "example": example})
    match = _AMOUNT.fullmatch(cleaned)
    if match is None:
        if re.fullmatch(r"\d+,\d{1,2}", cleaned):
            raise AmountParseError(
                gettext("%(text)s is not an amount: write decimals with a point, for example %(example)s.")
                % {"text": text.strip(), "example": example}
            )
        if cleaned.startswith("-"):
            raise AmountParseError(gettext("Enter a positive amount; a refund cannot be negative."))
        raise AmountParseError(
            gettext("%(text)s is not an amount in %(code)s; write it like %(example)s.")
            % {"text": text.strip(), "code": code, "example": example}
        )
    fraction = match.group("fraction") or ""
    if len(fraction) > places:
        if places == 0:
            raise AmountParseError(
                gettext("%(code)s has no decimal places: write whole %(code)s, for example %(example)s.")
                % {"code": code, "example": example}
            )
        raise AmountParseError(
            gettext("%(code)s has %(places)d decimal places; %(text)s has %(digits)d. Write it like %(example)s.")
            % {"code": code, "places": places, "text": text.strip(), "digits": len(fraction), "example": example}
        )
    value = Decimal(match.group("whole").replace(",", "") + "." + (fraction or "0"))
    minor = int(value.scaleb(places))
    if minor <= 0:
        raise AmountParseError(gettext("Enter an amount above zero."))
    return minor
