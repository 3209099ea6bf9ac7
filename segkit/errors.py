"""Errors a user can fix.

Anything raised as a :class:`SegkitError` reaches the user as one message and exit status 2,
never as a traceback; every other exception is a bug in segkit or a plugin and keeps its traceback.
"""

from __future__ import annotations


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
