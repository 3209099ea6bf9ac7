"""Built-in optimizers: SGD with momentum and AdamW."""

import segkit


@segkit.hookimpl
def segkit_register_optimizers(register):
    register("sgd", "segkit_plugins.optimizers.optimizers:sgd")
    register("adamw", "segkit_plugins.optimizers.optimizers:adamw")
