"""TensorBoard logging of a training run: scalars, prediction panels and the resolved config."""

import segkit


@segkit.hookimpl
def segkit_register_loggers(register):
    register("tensorboard", "segkit_plugins.tensorboard.logger:TensorBoardLogger", aliases=["tb"])
