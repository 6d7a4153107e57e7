"""`make run`: the whole refund system on one machine that has nothing but Python.

Migrates the SQLite database, starts localstripe (a Stripe emulator, on 127.0.0.1 only), seeds
demo orders paid there and a Back Office user, then runs Django's server, a Celery worker and
Celery beat on the embedded filesystem broker, all under this one process. Ctrl-C or SIGTERM
stops them all; so does any one of them dying. Run it again and it picks up where it stopped:
the database (db.sqlite3) and the emulator's store (var/localstripe.pickle) are kept together.

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
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
STATE_FILE = VAR_DIR / "demo.json"  # also read by `manage.py stripe_trigger`
PYTHON = sys.executable
STOP_TIMEOUT_SECONDS = 15
START_TIMEOUT_SECONDS = 60
STOPPED_LAST = ("stripe",)  # the others call it


class Shutdown(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: stop everything."""


class Supervisor:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.processes: dict[str, subprocess.Popen] = {}
        self.output_threads: list[threading.Thread] = []
        self.stopping = False

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        # Each child leads its own process group, so a terminal's Ctrl-C reaches only this
        # supervisor, which stops the children in order, grandchildren (worker pool) included.
        process = subprocess.Popen(
            args, cwd=BASE_DIR, env=self.env, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        thread = threading.Thread(target=_copy_output, args=(name, process), daemon=True)
        thread.start()
        self.output_threads.append(thread)
        return process

    def run_step(self, name: str, args: list[str]) -> None:
        """A one-off command (migrate, seed), stopped like the rest if we are interrupted."""
        process = self.start(name, args)
        code = process.wait()
        del self.processes[name]
        if code != 0:
            raise SystemExit(f"run_demo: `{' '.join(args[1:])}` failed with exit code {code}")

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop_all(self) -> None:
        """Stop every child: first the web server, worker and beat, then what they call (the
        Stripe emulator), so a task half-way through its Stripe call can finish it."""
        self.stopping = True
        started = time.monotonic()
        deadline = started + STOP_TIMEOUT_SECONDS
        last = [name for name in self.processes if name in STOPPED_LAST]
        for group in ([name for name in self.processes if name not in last], last):
            # SIGTERM to each leader only: the Celery worker then stops its own pool children
            # after their current task (SIGTERM to the whole group would kill it half-way).
            for name in group:
                if self.processes[name].poll() is None:
                    self.processes[name].terminate()
            for name in group:
                try:
                    code = self.processes[name].wait(timeout=max(0.1, deadline - time.monotonic()))
                    print(f"run_demo: {name} stopped (exit code {code}) after {time.monotonic() - started:.1f} s", flush=True)
                except subprocess.TimeoutExpired:
                    print(f"run_demo: {name} still running after {STOP_TIMEOUT_SECONDS} s: killed", flush=True)
        # Whatever is left, in any of the groups (a pool child whose parent is gone), is killed.
        for process in self.processes.values():
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        self.processes.clear()
        for thread in self.output_threads:
            thread.join(timeout=2)  # their last words (shutdown messages) before ours


def _copy_output(name: str, process: subprocess.Popen) -> None:
    prefix = f"{name:>7} | "
    for raw in iter(process.stdout.readline, b""):
        sys.stdout.write(prefix + raw.decode("utf-8", "replace").rstrip("\n") + "\n")
        sys.stdout.flush()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _runs_here(pid: int) -> bool:
    """Whether `pid` is a process started in this checkout (the children's working directory)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == BASE_DIR
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_up_previous_run() -> None:
    """A previous supervisor that was killed (kill -9, a closed terminal) may have left its
    children behind, holding the ports: stop them, but only processes of this checkout."""
    try:
        state = json.loads(STATE_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return
    supervisor = state.get("supervisor_pid")
    if supervisor and supervisor != os.getpid() and _alive(supervisor) and "run_demo.py" in _cmdline(supervisor):
        raise SystemExit(f"run_demo: the demo already runs (process {supervisor}); stop it with Ctrl-C there.")
    for name, pid in state.get("process_groups", {}).items():
        if _alive(pid) and _runs_here(pid):
            print(f"run_demo: stopping {name} (process group {pid}) left over from a previous run", flush=True)
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            _signal_group(pid, signal.SIGKILL)
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


def wait_for_url(url: str, supervisor: Supervisor, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while True:
        exited = supervisor.first_exited()
        if exited:
            raise SystemExit(f"run_demo: {exited[0]} exited with code {exited[1]} while starting")
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
        time.sleep(0.3)


def demo_environment(*, web_port: int, stripe_port: int, webhook_secret: str) -> dict[str, str]:
    env = dict(os.environ)
    # The demo is self-contained in this checkout, whatever the shell points at: never seed
    # demo orders into a database or broker configured for something else.
    env.update(
        DJANGO_SETTINGS_MODULE="refunds_project.settings",
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
        PYTHONUNBUFFERED="1",
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
        "    .venv/bin/python manage.py stripe_trigger failed --failure-reason declined",
        "    .venv/bin/python manage.py stripe_trigger succeeded",
        f"  Health:       http://127.0.0.1:{web_port}/health/",
        "  Ctrl-C stops everything.",
        "=" * 78,
        "",
    ])


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
    supervisor = Supervisor(env)

    def on_signal(signum, frame):
        if not supervisor.stopping:
            supervisor.stopping = True
            raise Shutdown(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    manage = [PYTHON, str(BASE_DIR / "manage.py")]
    celery = [PYTHON, "-m", "celery", "-A", "refunds_project"]
    code = 0
    try:
        supervisor.run_step("migrate", [*manage, "migrate", "--no-input"])
        supervisor.start("stripe", [
            PYTHON, "-m", "refunds.stripe_emulator", "--port", str(stripe_port),
            "--store", str(VAR_DIR / "localstripe.pickle"),
        ])
        wait_for_url(f"http://127.0.0.1:{stripe_port}/", supervisor)
        supervisor.run_step("seed", [*manage, "seed_demo", "--apply-schedule"])
        supervisor.start("web", [*manage, "runserver", "--noreload", f"127.0.0.1:{web_port}"])
        supervisor.start("worker", [
            *celery, "worker", "--loglevel", "INFO", "--concurrency", "1",
            "--without-gossip", "--without-mingle", "--hostname", "demo-worker@%h",
        ])
        supervisor.start("beat", [*celery, "beat", "--loglevel", "INFO", "--pidfile", str(VAR_DIR / "celerybeat.pid")])
        STATE_FILE.write_text(json.dumps({
            "supervisor_pid": os.getpid(),
            "process_groups": {name: process.pid for name, process in supervisor.processes.items()},
            "admin_url": f"http://127.0.0.1:{web_port}/admin/",
            "webhook_url": f"http://127.0.0.1:{web_port}/stripe/webhook/",
            "webhook_secret": webhook_secret,
        }, indent=2))
        wait_for_url(f"http://127.0.0.1:{web_port}/admin/login/", supervisor)
        print(banner(web_port=web_port, stripe_port=stripe_port, env=env), flush=True)
        while True:
            exited = supervisor.first_exited()
            if exited:
                print(f"run_demo: {exited[0]} exited with code {exited[1]}; stopping everything", flush=True)
                code = 1
                break
            time.sleep(0.5)
    except Shutdown as stop:
        print(f"\nrun_demo: {stop} received, stopping everything", flush=True)
    except SystemExit as error:
        print(error, file=sys.stderr, flush=True)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        supervisor.stop_all()
        STATE_FILE.unlink(missing_ok=True)
    print("run_demo: stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
