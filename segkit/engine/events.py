"""Calling the run-event hooks so that a plugin's failure never costs the run.

pluggy calls every implementation of a hook in one go, and an exception in one stops the call
and the training with it. A logger with a bug, or a tracking service that is down, must not lose
hours of training, so each plugin's implementation is called on its own: one that raises (any
exception, ``SystemExit`` included) is reported once, in one line, and not called again in this
run; the run's summary lists it. With ``SEGKIT_STRICT_PLUGINS=1`` such a failure instead stops the
run cleanly: the trainer saves ``last.pt`` at the next point where it can, then ends with status 2.

A full disk is not a plugin's fault: a hook that fails with "no space left on device" stops the
run with that message, whatever the setting, since the run's own files cannot be written either.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from segkit.errors import SegkitError
from segkit.files import DiskFull, is_disk_full


class PluginFailed(SegkitError):
    """A run-event hook raised while ``SEGKIT_STRICT_PLUGINS`` was set."""


@dataclass
class HookFailure:
    plugin: str
    hook: str
    error: str

    def describe(self) -> str:
        return f"plugin '{self.plugin}' failed in {self.hook}: {self.error}"


def strict_plugins() -> bool:
    return os.environ.get("SEGKIT_STRICT_PLUGINS", "") not in ("", "0")


class RunEvents:
    """``events.segkit_on_train_iter_end(run=..., step=..., logs=...)`` calls that hook of every
    plugin still in good standing, in pluggy's order (the last registered first)."""

    def __init__(self, manager: Any, enabled: bool = True):
        self.manager = manager
        self.enabled = enabled  # processes other than rank 0 call no hooks
        self.failures: list[HookFailure] = []
        self.strict = strict_plugins()

    @property
    def must_stop(self) -> bool:
        """A hook failed under ``SEGKIT_STRICT_PLUGINS``: the run saves and ends."""
        return self.strict and bool(self.failures)

    def stop_error(self, kept: str) -> PluginFailed:
        return PluginFailed(
            f"{self.failures[0].describe()}; SEGKIT_STRICT_PLUGINS is set, so the run stopped; "
            f"{kept}. Fix or disable the plugin (SEGKIT_DISABLE_PLUGINS) and resume"
        )

    def __getattr__(self, hook_name: str):
        if not hook_name.startswith("segkit_on_"):
            raise AttributeError(hook_name)
        return lambda **arguments: self.call(hook_name, arguments)

    def call(self, hook_name: str, arguments: dict[str, Any]) -> None:
        if not self.enabled:
            return
        failed = {failure.plugin for failure in self.failures}
        caller = getattr(self.manager.hook, hook_name)
        for implementation in reversed(caller.get_hookimpls()):
            plugin = implementation.plugin_name
            if plugin in failed:
                continue
            try:
                implementation.function(
                    **{name: arguments[name] for name in implementation.argnames}
                )
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # noqa: BLE001  (a plugin's bug, SystemExit too)
                if is_disk_full(error):
                    raise DiskFull(
                        f"no space left on device while plugin '{plugin}' wrote "
                        f"{getattr(error, 'filename', None) or 'its files'} ({hook_name})"
                    ) from error
                self._record(HookFailure(plugin, hook_name, _one_line(error)))
                failed.add(plugin)

    def _record(self, failure: HookFailure) -> None:
        self.failures.append(failure)
        consequence = (
            "the run stops after saving (SEGKIT_STRICT_PLUGINS)"
            if self.strict
            else "training goes on without it"
        )
        print(f"segkit: warning: {failure.describe()}; {consequence}", file=sys.stderr, flush=True)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
