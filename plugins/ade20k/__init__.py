"""Built-in plugin: the ADE20K scene-parsing datasets (150 classes, and the 25-class merge)."""

import segkit


@segkit.hookimpl
def segkit_register_datasets(register):
    register("ade20k", "segkit_plugins.ade20k.dataset:ADE20K")
    register("ade20k25", "segkit_plugins.ade20k.dataset:ADE20K25")
