"""Run localstripe (a Stripe API emulator) bound to 127.0.0.1 only.

localstripe's own command listens on every interface; this runs the same app on loopback:
    python -m refunds_dev.emulator --port 8420 [--from-scratch] [--store FILE]

localstripe writes its whole store to /tmp/localstripe.pickle after every change; `--store`
names another file (the demo keeps its own under var/, next to its database, so the two stay
consistent across restarts and other emulators on the machine cannot overwrite it);
`--memory-only` keeps it in memory (a benchmark's ten thousand refunds would rewrite the file
ten thousand times).

localstripe 1.15.10 lists refunds without Stripe's `created` filter (it answers 400 to it);
`allow_created_filter_on_refunds` adds `created[gt|gte|lt|lte]` as Stripe has it
(https://docs.stripe.com/api/refunds/list), which the catch-up (refunds.services.catch_up) reads.
"""

import argparse
import logging
import os
import pickle
from pathlib import Path

LOCALSTRIPE_STORE_FILE = "/tmp/localstripe.pickle"


def use_store_file(store, path: str) -> None:
    """Make localstripe's store load from and save to `path`, replacing the file atomically so
    an emulator killed mid-write leaves the previous store, not a truncated one."""
    path = Path(path)

    def try_load_from_disk():
        try:
            with path.open("rb") as f:
                saved = pickle.load(f)
        except FileNotFoundError:
            return
        store.clear()
        store.update(saved)

    def dump_to_disk():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with partial.open("wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, path)

    store.try_load_from_disk = try_load_from_disk
    store.dump_to_disk = dump_to_disk


def allow_created_filter_on_refunds() -> None:
    """`GET /v1/refunds?created[gte]=…&created[lte]=…` on localstripe, filtering before paging."""
    from localstripe.resources import Refund, UserError, try_convert_to_int

    listing = Refund._api_list_all.__func__
    if getattr(listing, "filters_created", False):
        return

    def _api_list_all(cls, url, created=None, **kwargs):
        bounds = {}
        if created is not None:
            if not isinstance(created, dict) or not set(created) <= {"gt", "gte", "lt", "lte"}:
                raise UserError(400, "Bad request")
            for key, value in created.items():
                bounds[key] = try_convert_to_int(value)
                if not isinstance(bounds[key], int):
                    raise UserError(400, "Bad request")
        li = listing(cls, url, **kwargs)
        checks = {"gt": lambda c, v: c > v, "gte": lambda c, v: c >= v, "lt": lambda c, v: c < v, "lte": lambda c, v: c <= v}
        li._list = [r for r in li._list if all(checks[key](r.created, value) for key, value in bounds.items())]
        return li

    _api_list_all.filters_created = True
    Refund._api_list_all = classmethod(_api_list_all)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--from-scratch", action="store_true", help="start empty instead of loading the saved store")
    parser.add_argument("--store", default=LOCALSTRIPE_STORE_FILE, help="file the emulator loads and saves its objects in")
    parser.add_argument("--memory-only", action="store_true", help="keep the store in memory only (benchmarks)")
    args = parser.parse_args(argv)

    from aiohttp import web
    from localstripe.resources import store
    from localstripe.server import app

    allow_created_filter_on_refunds()
    if args.memory_only:
        store.try_load_from_disk = store.dump_to_disk = lambda: None
    elif args.store != LOCALSTRIPE_STORE_FILE:
        use_store_file(store, args.store)
    if not args.from_scratch:
        store.try_load_from_disk()
    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, host=args.host, port=args.port, print=lambda *a: print(*a, flush=True))


if __name__ == "__main__":
    main()
