"""Built-in plugin: the `synthetic` dataset, procedural scenes generated in memory."""

import segkit


@segkit.hookimpl
def segkit_register_datasets(register):
    register("synthetic", "segkit_plugins.synthetic.dataset:Synthetic")
