"""Built-in plugin: the `folder` dataset, for a user's own images and masks."""

import segkit


@segkit.hookimpl
def segkit_register_datasets(register):
    register("folder", "segkit_plugins.folder.dataset:Folder")
