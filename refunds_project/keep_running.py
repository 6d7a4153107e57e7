"""`python -m refunds_project.keep_running -- CMD …`: run CMD, and start it again whenever it exits.

A Celery worker on Redis can exit when Redis restarts while the worker holds unacknowledged
tasks (kombu 5.7: "Unrecoverable error: AttributeError: 'NoneType' object has no attribute
'hostname'"; no Celery or kombu release fixes it yet). The refunds are safe meanwhile
(`reconcile_refunds` re-sends what is still queued), but the worker must come back within
seconds, not when a platform's crash back-off allows. So the Procfiles run the worker under this:
a restart after 1 s, doubling up to 30 s while it keeps exiting, back to 1 s once it has run a
minute. SIGTERM or SIGINT is passed on to CMD, and ends this too, with CMD's exit code.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

FIRST_DELAY, MAX_DELAY, HEALTHY_AFTER = 1.0, 30.0, 60.0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m refunds_project.keep_running -- CMD [ARG …]", file=sys.stderr)
        return 2
    stopping: list[int] = []
    child: subprocess.Popen | None = None

    def stop(signum, frame):
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)

    delay = FIRST_DELAY
    while True:
        started = time.monotonic()
        child = subprocess.Popen(argv)
        code = child.wait()
        if stopping:
            return code
        if time.monotonic() - started > HEALTHY_AFTER:
            delay = FIRST_DELAY
        print(f"keep_running: {argv[0]} exited with code {code}; starting it again in {delay:g} s", file=sys.stderr, flush=True)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not stopping:
            time.sleep(0.1)
        if stopping:
            return code
        delay = min(delay * 2, MAX_DELAY)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
