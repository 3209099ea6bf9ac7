"""The UPerNet head as ``uper`` (pyramid pooling + feature pyramid over several stages).

Light on purpose: the factory is a "module:attribute" string, imported only when built or shown.
"""

import segkit


@segkit.hookimpl
def segkit_register_heads(register):
    register("uper", "segkit_plugins.uper.head:UPerHead")
