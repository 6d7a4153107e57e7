"""Money in integer minor units, as Stripe's `amount`; display only happens here.

Exponents follow Stripe's list of zero- and three-decimal currencies:
https://docs.stripe.com/currencies#zero-decimal
"""

from decimal import Decimal

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
    """`3500, "eur"` -> `"€35.00"`; unknown symbols fall back to the upper-case code."""
    places = exponent(currency)
    value = Decimal(amount).scaleb(-places)
    sign = "-" if value < 0 else ""
    prefix = SYMBOLS.get(currency, currency.upper() + " ")
    return f"{sign}{prefix}{abs(value):,.{places}f}"
