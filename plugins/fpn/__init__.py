"""The Semantic FPN head (Kirillov et al., CVPR 2019, Panoptic FPN's semantic branch) as ``fpn``.

Light on purpose: the factory is a "module:attribute" string, imported only when built or shown.
"""

import segkit


@segkit.hookimpl
def segkit_register_heads(register):
    register("fpn", "segkit_plugins.fpn.head:SemanticFPNHead")
