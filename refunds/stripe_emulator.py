"""Run localstripe (a Stripe API emulator) bound to 127.0.0.1 only.

localstripe's own command listens on every interface; this runs the same app on loopback:
    python -m refunds.stripe_emulator --port 8420 [--from-scratch]
"""

import argparse
import logging


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--from-scratch", action="store_true", help="start empty instead of loading the saved store")
    args = parser.parse_args(argv)

    from aiohttp import web
    from localstripe.resources import store
    from localstripe.server import app

    if not args.from_scratch:
        store.try_load_from_disk()
    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, host=args.host, port=args.port, print=lambda *a: print(*a, flush=True))


if __name__ == "__main__":
    main()
