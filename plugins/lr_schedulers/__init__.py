"""Built-in per-iteration LR schedules: poly, cosine, step and constant, each with optional
linear warmup."""

import segkit


@segkit.hookimpl
def segkit_register_lr_schedulers(register):
    register("poly", "segkit_plugins.lr_schedulers.schedules:PolyLR")
    register("cosine", "segkit_plugins.lr_schedulers.schedules:CosineLR")
    register("step", "segkit_plugins.lr_schedulers.schedules:StepLR")
    register("constant", "segkit_plugins.lr_schedulers.schedules:ConstantLR")
