"""Output helpers for operators' commands: a progress bar (tqdm) on a terminal, durations in words."""

from __future__ import annotations

from datetime import timedelta

from tqdm import tqdm

# Below this many units of work a bar is noise.
PROGRESS_THRESHOLD = 1000


def progress_bar(command, total: int, *, label: str, threshold: int = PROGRESS_THRESHOLD) -> tqdm:
    """A tqdm bar on the command's stderr, drawn only when that is a terminal and there is much
    to do (a cron job's log gets no carriage returns)."""
    stream = command.stderr._out
    enabled = total >= threshold and stream.isatty()
    return tqdm(total=total, desc=label, unit="", unit_scale=False, file=stream, disable=not enabled, leave=True)


def duration_text(duration: timedelta) -> str:
    """`7 days`, `1 hour`, `5 minutes`, `1 day 12 hours`: a settings period as people say it."""
    minutes = round(duration.total_seconds() / 60)
    parts = []
    for unit, size in (("day", 24 * 60), ("hour", 60), ("minute", 1)):
        count, minutes = divmod(minutes, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts) or f"{duration.total_seconds():g} seconds"
