"""Dilated Residual Networks: DRN-A/B/C/D backbones and the DRN segmentation head.

Light on purpose: factories are "module:attribute" strings, imported only when built or shown.
"""

import segkit

_MODEL = "segkit_plugins.drn.model"
NAMES = (
    "drn_a_18", "drn_a_34", "drn_a_50",
    "drn_b_26",
    "drn_c_26", "drn_c_42", "drn_c_58",
    "drn_d_22", "drn_d_24", "drn_d_38", "drn_d_40",
    "drn_d_54", "drn_d_56", "drn_d_105", "drn_d_107",
)


@segkit.hookimpl
def segkit_register_backbones(register):
    for name in NAMES:
        register(name, f"{_MODEL}:{name}")


@segkit.hookimpl
def segkit_register_heads(register):
    register("drn_seg", "segkit_plugins.drn.head:DRNSegHead")
