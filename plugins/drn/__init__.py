"""Dilated Residual Networks: DRN-A/B/C/D backbones and the DRN segmentation head.

Light on purpose: factories are "module:attribute" strings, imported only when built or shown.

What other code may rely on (docs/models.md): every backbone built from these names has
``drn_arch``, ``"a"``, ``"b"``, ``"c"`` or ``"d"``, and its parameter names are the official DRN
code's (``conv1``/``bn1``/``layer1..layer4`` for DRN-A, ``conv1``/``bn1``/``layer1..layer8`` for
DRN-B/C, ``layer0..layer8`` for DRN-D), so official weight files load without renaming.
"""

import segkit

_MODEL = "segkit_plugins.drn.model"
# grouped by variant, as in the paper's tables
# fmt: off
NAMES = (
    "drn_a_18", "drn_a_34", "drn_a_50",
    "drn_b_26",
    "drn_c_26", "drn_c_42", "drn_c_58",
    "drn_d_22", "drn_d_24", "drn_d_38", "drn_d_40",
    "drn_d_54", "drn_d_56", "drn_d_105", "drn_d_107",
)
# fmt: on


def variant_help(name: str) -> str:
    """The one-line help of ``name`` (``drn_c_26``), given here because listing reads no factory
    made at import time (and the factory's docstring, in model.py)."""
    title = name.upper().replace("_", "-")
    return f"{title}, dilated residual network at output stride 8 (Yu et al., 2017)."


@segkit.hookimpl
def segkit_register_backbones(register):
    for name in NAMES:
        register(name, f"{_MODEL}:{name}", help=variant_help(name))


@segkit.hookimpl
def segkit_register_heads(register):
    register("drn_seg", "segkit_plugins.drn.head:DRNSegHead")
