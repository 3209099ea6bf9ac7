"""Any timm model that can return stage features, as the backbone ``timm`` (extra: segkit[timm]).

Light on purpose: the factory is a "module:attribute" string, so listing imports neither torch nor
timm; timm is imported only when a config builds or shows the backbone.
"""

import segkit


@segkit.hookimpl
def segkit_register_backbones(register):
    register("timm", "segkit_plugins.timm.backbone:TimmBackbone")
