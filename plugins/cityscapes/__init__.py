"""Built-in plugin: the Cityscapes dataset (fine annotations, 19 training classes)."""

import segkit


@segkit.hookimpl
def segkit_register_datasets(register):
    register("cityscapes", "segkit_plugins.cityscapes.dataset:Cityscapes")
