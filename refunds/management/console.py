"""A one-line progress bar for operators' commands, drawn only on a terminal."""

from __future__ import annotations


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

    def close(self) -> None:
        if self.enabled and self._drawn >= 0:
            self.stream.write("", style_func=_plain)  # end the bar's line
