"""The DeepLabv3 head (atrous spatial pyramid pooling) as ``aspp`` and DeepLabv3+'s decoder,
which runs the same pyramid, as ``deeplabv3plus``.

Light on purpose: the factories are "module:attribute" strings, imported only when built or shown.
"""

import segkit


@segkit.hookimpl
def segkit_register_heads(register):
    register("aspp", "segkit_plugins.aspp.head:ASPPHead")
    register("deeplabv3plus", "segkit_plugins.aspp.deeplabv3plus:DeepLabV3PlusHead")
