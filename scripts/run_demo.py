"""`make run`: the whole refund system on one machine that has nothing but Python.

honcho runs the processes of Procfile.dev: Django's server, localstripe (a Stripe emulator, on
127.0.0.1 only), a Celery worker and Celery beat on the embedded filesystem broker. It stops
them all when one dies. This script does what honcho cannot: it checks the ports, sets the
demo's environment, migrates the SQLite database before anything starts, seeds demo orders paid
in the emulator and a Back Office user once the emulator answers, prints where to go, and
records in var/demo.json what `manage.py stripe_trigger` needs and what a later run must stop
if this one was killed with kill -9. Ctrl-C or SIGTERM stops everything.

Run it again and it picks up where it stopped: the database (db.sqlite3) and the emulator's
store (var/localstripe.pickle) are kept together.

Environment (all optional):
  DEMO_WEB_PORT            8000  the Back Office at http://127.0.0.1:PORT/admin/
  DEMO_STRIPE_PORT         8420  localstripe
  DEMO_SETTLEMENT_SECONDS  120   "payment refund succeeded" → "payment refunded" after this
  DEMO_JOBS_EVERY_SECONDS  10    how often beat runs finalize_refunds and reconcile_refunds
  DEMO_ADMIN_USERNAME / DEMO_ADMIN_PASSWORD   admin / admin
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
STATE_FILE = VAR_DIR / "demo.json"  # also read by `manage.py stripe_trigger`
PROCFILE = "Procfile.dev"
PYTHON = sys.executable
# honcho sends SIGTERM, then SIGKILL 5 s after the first process stopped; this is our limit.
STOP_TIMEOUT_SECONDS = 15
START_TIMEOUT_SECONDS = 60
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

received: list[int] = []  # stop signals, acted on between two waits (see pause())


class Shutdown(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: stop everything."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def on_signal(signum, frame) -> None:
    # Only noted here: raising from the handler could land inside Popen, after honcho was
    # forked but before we hold its pid, and leave it running.
    received.append(signum)


def pause(seconds: float = 0.3) -> None:
    time.sleep(seconds)
    if received:
        raise Shutdown(received[0])


def run_step(env: dict[str, str], *args: str) -> None:
    """A `manage.py` command that must finish before the next step; stopped by Ctrl-C too."""
    step = subprocess.Popen([PYTHON, "manage.py", *args], cwd=BASE_DIR, env=env, start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        while step.poll() is None:
            pause(0.2)
    finally:
        if step.poll() is None:
            step.terminate()
            step.wait()
    if step.returncode != 0:
        raise SystemExit(f"run_demo: `manage.py {' '.join(args)}` failed with exit code {step.returncode}")


def start_honcho(env: dict[str, str], *, web_port: int) -> subprocess.Popen:
    # A session of its own: a terminal's Ctrl-C reaches only us, and we tell honcho once.
    # honcho starts each process in a session of its own too, and signals that whole group.
    # `--env /dev/null`: the demo's environment is the one set here, not a .env file's.
    return subprocess.Popen(
        [PYTHON, "-m", "honcho", "start", "--procfile", PROCFILE, "--env", os.devnull, "--port", str(web_port)],
        cwd=BASE_DIR, env=env, start_new_session=True, stdin=subprocess.DEVNULL,
    )


def stop_honcho(honcho: subprocess.Popen, signum: int) -> None:
    if honcho.poll() is None:
        # honcho handles SIGINT and SIGTERM alike; a SIGHUP would kill it without its children.
        honcho.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
    try:
        honcho.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        # honcho 2.0 can hang: a signal before all its processes started (KeyError in its
        # handler), or a terminal gone that it cannot print to. Its tree is intact while it runs.
        groups = process_groups_under(honcho.pid)
        print(f"run_demo: honcho did not stop within {STOP_TIMEOUT_SECONDS} s: killing process groups {groups}", flush=True)
        _signal_group(honcho.pid, signal.SIGKILL)
        honcho.wait()  # reaped, so that its group is gone for stop_groups
        stop_groups(groups, signal.SIGKILL)


def stop_groups(groups: list[int], first: int = signal.SIGTERM) -> None:
    """Signal each process group; return once all are gone, after SIGKILL to what is left
    when STOP_TIMEOUT_SECONDS have passed."""
    for sig, timeout in ((first, STOP_TIMEOUT_SECONDS), (signal.SIGKILL, 5)):
        for pgid in groups:
            _signal_group(pgid, sig)
        deadline = time.monotonic() + timeout
        while any(_group_alive(pgid) for pgid in groups):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        else:
            return


def process_groups_under(root: int) -> list[int]:
    """The process groups of `root` and its descendants: honcho's own, and one per Procfile
    process (a Celery worker's pool children are in their parent's)."""
    children: dict[int, list[int]] = defaultdict(list)
    group_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
            _, ppid, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # gone meanwhile
        children[int(ppid)].append(int(entry.name))
        group_of[int(entry.name)] = int(pgrp)
    groups, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in group_of:
            groups.add(group_of[pid])
        todo.extend(children[pid])
    return sorted(groups)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _runs_here(pid: int) -> bool:
    """Whether `pid` is a live process started in this checkout (honcho's and its children's
    working directory). A zombie or another user's process has no readable cwd."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == BASE_DIR
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def clean_up_previous_run() -> None:
    """A previous run killed with kill -9 may have left honcho running, or (honcho killed too)
    its processes, holding the ports: stop them, but only processes of this checkout."""
    try:
        state = json.loads(STATE_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return
    previous = state.get("run_demo_pid")
    if previous and previous != os.getpid() and "run_demo.py" in _cmdline(previous):
        raise SystemExit(f"run_demo: the demo already runs (process {previous}); stop it with Ctrl-C there.")
    # A live honcho stops its processes itself on SIGTERM, as on Ctrl-C; theirs get it too,
    # for when honcho is gone.
    groups = [pgid for pgid in [state.get("honcho_pid"), *state.get("process_groups", [])] if pgid and _runs_here(pgid)]
    for pgid in groups:
        print(f"run_demo: stopping process group {pgid} ({_cmdline(pgid)}), left over from a previous run", flush=True)
    stop_groups(groups)
    STATE_FILE.unlink(missing_ok=True)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the servers bind: connections of a previous run in TIME_WAIT do not block them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_url(url: str, honcho: subprocess.Popen, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if honcho.poll() is not None:
            raise SystemExit(f"run_demo: a process exited while starting (honcho exit code {honcho.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"run_demo: {url} did not answer within {timeout:.0f} s")
        pause()


def demo_environment(*, web_port: int, stripe_port: int, webhook_secret: str) -> dict[str, str]:
    env = dict(os.environ)
    # The demo is self-contained in this checkout, whatever the shell points at: never seed
    # demo orders into a database or broker configured for something else.
    env.update(
        # Procfile.dev's `python` and `celery` are this virtualenv's, activated or not.
        PATH=os.pathsep.join([str(Path(PYTHON).parent), env.get("PATH", "")]),
        DJANGO_SETTINGS_MODULE="refunds_project.settings_dev",
        DJANGO_DEBUG="1",
        DATABASE_URL=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        REFUNDS_VAR_DIR=str(VAR_DIR),
        CELERY_BROKER_URL="filesystem://",
        CELERY_TASK_ALWAYS_EAGER="0",
        STRIPE_SECRET_KEY="sk_test_demo_localstripe",
        STRIPE_WEBHOOK_SECRET=webhook_secret,
        STRIPE_API_BASE=f"http://127.0.0.1:{stripe_port}",
        STRIPE_SEND_REFUND_REASON="0",  # localstripe answers 400 to a refund `reason`
        REFUND_SETTLEMENT_SECONDS=os.environ.get("DEMO_SETTLEMENT_SECONDS", "120"),
        REFUND_JOBS_EVERY_SECONDS=os.environ.get("DEMO_JOBS_EVERY_SECONDS", "10"),
        DEMO_WEB_PORT=str(web_port),
        DEMO_STRIPE_PORT=str(stripe_port),  # Procfile.dev's stripe process
        PYTHONUNBUFFERED="1",  # lines reach honcho as they are written
    )
    return env


def banner(*, web_port: int, stripe_port: int, env: dict[str, str]) -> str:
    username = os.environ.get("DEMO_ADMIN_USERNAME", "admin")
    password = os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
    return "\n".join([
        "",
        "=" * 78,
        f"  Back Office:  http://127.0.0.1:{web_port}/admin/",
        f"  Log in as:    {username} / {password}   (a password you changed since is kept)",
        f"  Stripe:       localstripe at http://127.0.0.1:{stripe_port} (refunds succeed at once)",
        f"  Settlement:   payment refund succeeded → payment refunded after "
        f"{env['REFUND_SETTLEMENT_SECONDS']} s; jobs run every {env['REFUND_JOBS_EVERY_SECONDS']} s",
        "  Play Stripe's later word on the latest refund, in another terminal:",
        '    make trigger ARGS="failed --failure-reason declined"',
        "    make trigger ARGS=succeeded",
        f"  Health:       http://127.0.0.1:{web_port}/health/",
        "  Ctrl-C stops everything.",
        "=" * 78,
        "",
    ])


def write_state(**state) -> None:
    STATE_FILE.write_text(json.dumps({"run_demo_pid": os.getpid(), **state}, indent=2))


def main() -> int:
    web_port = int(os.environ.get("DEMO_WEB_PORT", "8000"))
    stripe_port = int(os.environ.get("DEMO_STRIPE_PORT", "8420"))
    VAR_DIR.mkdir(exist_ok=True)
    clean_up_previous_run()
    for name, port in (("DEMO_WEB_PORT", web_port), ("DEMO_STRIPE_PORT", stripe_port)):
        if not port_is_free(port):
            raise SystemExit(f"run_demo: port {port} on 127.0.0.1 is in use; choose another with {name}=…")

    webhook_secret = f"whsec_demo_{secrets.token_hex(16)}"
    env = demo_environment(web_port=web_port, stripe_port=stripe_port, webhook_secret=webhook_secret)
    urls = {
        "admin_url": f"http://127.0.0.1:{web_port}/admin/",
        "webhook_url": f"http://127.0.0.1:{web_port}/stripe/webhook/",
        "webhook_secret": webhook_secret,
    }
    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)

    honcho = None
    code = 0
    try:
        run_step(env, "migrate", "--no-input")
        honcho = start_honcho(env, web_port=web_port)
        write_state(honcho_pid=honcho.pid, **urls)
        wait_for_url(f"http://127.0.0.1:{stripe_port}/", honcho)
        run_step(env, "seed_demo", "--apply-schedule")
        wait_for_url(f"http://127.0.0.1:{web_port}/admin/login/", honcho)
        # All of honcho's processes run by now: if both we and honcho are killed, the next
        # run stops them by these groups.
        write_state(honcho_pid=honcho.pid, process_groups=process_groups_under(honcho.pid), **urls)
        print(banner(web_port=web_port, stripe_port=stripe_port, env=env), flush=True)
        while honcho.poll() is None:
            pause()
        print(f"run_demo: a process exited and honcho stopped the others (exit code {honcho.returncode})", flush=True)
        code = 1
    except Shutdown as stop:
        print(f"\nrun_demo: {stop} received, stopping everything", flush=True)
    except SystemExit as error:
        print(error, file=sys.stderr, flush=True)
        code = 1
    finally:
        # Signals from here on are noted and ignored: a second Ctrl-C must not cut this short.
        if honcho is not None:
            stop_honcho(honcho, received[0] if received else signal.SIGTERM)
        STATE_FILE.unlink(missing_ok=True)
    print("run_demo: stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
