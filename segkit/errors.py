"""Errors a user can fix.

Anything raised as a :class:`SegkitError` reaches the user as one message and exit status 2,
never as a traceback; every other exception is a bug in segkit or a plugin and keeps its traceback.
"""

from __future__ import annotations

import re


class SegkitError(Exception):
    """A problem with the user's input (config, data, files, plugins) that they can fix."""


class ConfigError(SegkitError):
    """One or more problems in a config; all of them are reported together."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        count = len(self.problems)
        header = "" if count == 1 else f"{count} problems in the config:\n"
        super().__init__(header + "\n".join(self.problems))


class UnknownComponentError(SegkitError):
    """A component name that no loaded plugin provides, or that two plugins both provide."""


class PluginError(SegkitError):
    """A plugin failed to load or register while ``SEGKIT_STRICT_PLUGINS=1`` was set."""


class DataError(SegkitError):
    """Missing, unreadable or inconsistent data files."""


class CheckpointError(SegkitError):
    """A checkpoint or weight file that cannot be used as asked."""


class SampleError(DataError):
    """One sample that cannot be used (unreadable file, mask of the wrong size, label values out
    of range). Datasets raise it; ``data.on_bad_sample`` decides whether it stops the run or the
    sample is skipped with a warning.

    Raised in a data-loading worker, it reaches the main process through PyTorch, which rebuilds
    it from a message that embeds the worker's traceback; only the original message is kept, so
    that the user still sees one line naming the file.
    """

    def __init__(self, message: str):
        if message.startswith("Caught "):
            last_line = list(re.finditer(rf"(?m)^[\w.]*\b{type(self).__name__}: ", message))
            if last_line:
                message = message[last_line[-1].end() :].strip()
        super().__init__(message)
