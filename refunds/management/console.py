"""Output helpers for operators' commands: a progress bar drawn only on a terminal, durations."""

from __future__ import annotations

from datetime import timedelta


def _plain(text: str) -> str:
    return text  # a command's stderr colours everything as an error otherwise


# Below this many units of work a bar is noise.
PROGRESS_THRESHOLD = 1000


class ProgressBar:
    """`[#######.......]  4,000/10,000  40%` redrawn in place on `stream` (a terminal)."""

    def __init__(self, stream, total: int, *, label: str, enabled: bool, width: int = 30):
        self.stream, self.total, self.label, self.width = stream, max(total, 0), label, width
        self.enabled = enabled and self.total > 0
        self.done = 0
        self._drawn = -1
        self._closed = False

    @classmethod
    def for_command(cls, command, total: int, *, label: str, threshold: int = PROGRESS_THRESHOLD) -> ProgressBar:
        """A bar on the command's stderr when that is a terminal and there is much to do."""
        return cls(command.stderr, total, label=label, enabled=total >= threshold and command.stderr.isatty())

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        if not self.enabled:
            return
        percent = min(100, self.done * 100 // self.total)
        if percent != self._drawn:
            self._drawn = percent
            filled = self.width * percent // 100
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done:,}/{self.total:,} {percent:3d}%", style_func=_plain, ending="")
            self.stream.flush()
            if percent == 100:
                self.close()  # end the line before anything else is printed

    def close(self) -> None:
        if self.enabled and self._drawn >= 0 and not self._closed:
            self._closed = True
            self.stream.write("", style_func=_plain)


def duration_text(duration: timedelta) -> str:
    """`7 days`, `1 hour`, `5 minutes`, `1 day 12 hours`: a settings period as people say it."""
    minutes = round(duration.total_seconds() / 60)
    parts = []
    for unit, size in (("day", 24 * 60), ("hour", 60), ("minute", 1)):
        count, minutes = divmod(minutes, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts) or f"{duration.total_seconds():g} seconds"
