"""The DeepLabv3 head (atrous spatial pyramid pooling) as ``aspp``.

Light on purpose: the factory is a "module:attribute" string, imported only when built or shown.
"""

import segkit


@segkit.hookimpl
def segkit_register_heads(register):
    register("aspp", "segkit_plugins.aspp.head:ASPPHead")
