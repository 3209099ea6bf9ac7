"""The console progress bar of a training run: rate, ETA, loss and learning rate."""

import segkit


@segkit.hookimpl
def segkit_register_loggers(register):
    register("progress", "segkit_plugins.progress.logger:ProgressLogger")
