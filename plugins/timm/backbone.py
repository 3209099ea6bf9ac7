"""A timm model's stage features as a segkit backbone.

timm builds the network (``features_only=True``) and says what each feature level is
(``feature_info``: channels and stride); this module turns that into segkit's backbone contract
(``out_channels``, ``strides``, ``forward`` -> list of N x C x H x W features), freezes the early
stages, and loads local timm weight files through timm's own loader after segkit's strict check.
Only timm's public API is used: ``create_model``, ``is_model``, ``list_models``,
``get_pretrained_cfg``.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

import torch
from torch import nn

from segkit.errors import SegkitError
from segkit.layers import check_in_channels
from segkit_plugins.timm.weights import adapt_first_convs, check_fits, read_state_dict, without

try:
    import timm
except ImportError:
    raise ImportError(
        "the backbone 'timm' needs the timm package, which cannot be imported here; install "
        "segkit's timm extra: pip install 'segkit[timm]'"
    ) from None

LEVELS = 4  # feature levels taken by default: strides 4..32 on a CNN, as segkit's own backbones
# create_model arguments the backbone's own options set; timm_options may not
OWN = {
    "features_only": "num_classes",
    "out_indices": "out_indices",
    "output_stride": "output_stride",
    "in_chans": "in_channels",
    "num_classes": "num_classes",
    "pretrained": "pretrained",
    "pretrained_cfg": "pretrained",
    "pretrained_cfg_overlay": "pretrained",
    "pretrained_strict": "pretrained_strict",
}
SET_HERE = ("features_only", "out_indices", "output_stride", "pretrained_cfg_overlay")


class TimmBackbone(nn.Module):
    """Any timm model with features_only, by its timm name (e.g. convnext_tiny, resnet50).

    Names: python -c "import timm; print(timm.list_models('convnext*'))" lists the models
    matching a pattern (timm.list_models() all of them); any of them with features_only works.
    ``out_indices``: the feature levels to return, in timm's numbering (negative from the end);
    default the last four (on CNNs the features at strides 4, 8, 16, 32). ``output_stride``: 8,
    16 or 32 for models that can dilate (ResNets, ConvNeXt, EfficientNets, RegNets, ...); default
    the model's own. ``frozen_stages``: -1 trains all; 0 freezes the stem (every module before the
    first returned level); k also the layers up to the k-th returned level (no gradient, norms in
    eval mode). ``pretrained``: a local timm classification weight file (.pth, .bin or
    .safetensors, a state dict as timm saves it; the classifier is dropped), checked key by key.
    ``in_channels``: input channels; RGB weights are adapted. ``num_classes``: keep timm's
    classifier with N classes and return logits instead of features. ``timm_options``: further
    timm.create_model arguments, e.g. {drop_path_rate: 0.1}, {dynamic_img_size: true} for ViTs,
    {strict_img_size: false} for Swin. Docs: docs/models.md.
    """

    def __init__(
        self,
        name: str,
        out_indices: list[int] | None = None,
        output_stride: Literal[8, 16, 32] | None = None,
        frozen_stages: int = -1,
        pretrained: str | None = None,
        pretrained_strict: bool = True,
        in_channels: int = 3,
        num_classes: int | None = None,
        timm_options: dict[str, Any] | None = None,
    ):
        super().__init__()
        check_model_name(name)
        check_in_channels(in_channels)
        if output_stride not in (None, 8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32 (or null); got {output_stride!r}")
        options = {**check_timm_options(timm_options), "in_chans": in_channels}
        if output_stride is not None:
            options["output_stride"] = output_stride
        if num_classes is None:
            options["features_only"] = True
            options["out_indices"] = tuple(out_indices or range(-LEVELS, 0))
        else:
            options["num_classes"] = num_classes
        if pretrained:
            options.update(pretrained_options(name, pretrained, pretrained_strict, options))
        self.model = create(name, options, out_indices)
        self.in_channels, self.timm_name = in_channels, name
        if num_classes is None:
            info = self.model.feature_info
            self.out_channels, self.strides = list(info.channels()), list(info.reduction())
            self.channels_last_output = getattr(self.model, "output_fmt", "NCHW") == "NHWC"
            frozen, self.frozen_modules = frozen_parts(
                self.model, info.module_name(), frozen_stages
            )
        elif frozen_stages != -1:
            raise ValueError("frozen_stages needs the feature backbone (leave out num_classes)")
        else:
            frozen, self.frozen_modules = [], []
        for parameter in frozen:
            parameter.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> TimmBackbone:
        """Frozen modules stay in eval mode. They are looked up by name each time, so a module
        the engine swaps in later (a synchronised batch norm) is held to it too."""
        super().train(mode)
        for name in self.frozen_modules:
            self.model.get_submodule(name).eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        try:
            output = self.model(x)
        except AssertionError as error:  # timm's patch embedding of a fixed-size model
            if "match model" not in str(error):
                raise
            raise SegkitError(
                f"timm's '{self.timm_name}' takes one input size only ({error}); build it with "
                "timm_options: {dynamic_img_size: true} (ViT-like models) or "
                "{strict_img_size: false} (Swin-like models)"
            ) from None
        if isinstance(output, torch.Tensor):  # the classifier's logits
            return output
        if self.channels_last_output:  # Swin-like models give N x H x W x C
            return [f.permute(0, 3, 1, 2) for f in output]
        return list(output)


def check_timm_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Further ``timm.create_model`` arguments (``drop_path_rate``, ``dynamic_img_size``, ...),
    refused where one of the backbone's own options says it."""
    if options is None:
        return {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ValueError(
            f"timm_options must be a mapping of argument names to values; got {options!r}"
        )
    taken = [f"'{k}' (set it with {OWN[k]})" for k in options if k in OWN]
    if taken:
        raise ValueError(f"timm_options: {', '.join(taken)} is the backbone's own option")
    return dict(options)


def check_model_name(name: str) -> None:
    """An unknown name is refused with the closest timm names and how to list them."""
    if timm.is_model(name):
        return
    names = timm.list_models()
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    stem = name.split("_")[0].rstrip("0123456789") or name
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise ValueError(
        f"name: '{name}' is not a timm model; {hint}list the names with: "
        f"python -c \"import timm; print(timm.list_models('{stem}*'))\""
    )


def create(name: str, options: dict, out_indices: list[int] | None) -> nn.Module:
    """``timm.create_model`` with its complaints about our options turned into clear ones; a
    model with fewer than four feature levels returns all of them by default."""
    try:
        return timm.create_model(name, pretrained="pretrained_cfg_overlay" in options, **options)
    except TypeError as error:
        raise unknown_argument(name, error) from None
    except (IndexError, AssertionError) as error:
        if isinstance(error, AssertionError) and "out of range" not in str(error):
            if "output_stride" not in options:
                raise
            raise ValueError(
                f"output_stride: timm's '{name}' does not support output_stride "
                f"{options['output_stride']}"
            ) from None
        with torch.device("meta"):
            probe = {k: v for k, v in options.items() if k not in SET_HERE}
            levels = len(timm.create_model(name, features_only=True, **probe).feature_info)
        if out_indices is None:
            return create(name, {**options, "out_indices": tuple(range(levels))}, [])
        raise ValueError(
            f"out_indices: {out_indices} is out of range for timm's '{name}', which has "
            f"{levels} feature levels (0..{levels - 1}, or -{levels}..-1)"
        ) from None


def unknown_argument(name: str, error: TypeError) -> Exception:
    """What to tell the user when timm's model class refused an argument: an output stride it
    cannot change, or a ``timm_options`` entry it does not take (any other TypeError is a bug)."""
    unknown = re.search(r"unexpected keyword argument '(\w+)'", str(error))
    if unknown is None:
        return error
    if unknown.group(1) == "output_stride":
        return ValueError(
            f"output_stride: timm's '{name}' cannot change its output stride (it takes no "
            f"output_stride argument); leave output_stride out to use the model's own"
        )
    return ValueError(f"timm_options: timm's '{name}' takes no argument '{unknown.group(1)}'")


def pretrained_options(name: str, path: str, strict: bool, options: dict) -> dict:
    """The ``create_model`` options that make timm's loader read ``path``'s weights, after the
    file was checked against the classification model (classifier left out for features)."""
    config = timm.get_pretrained_cfg(name)
    classifier = tuple(_names(config.classifier)) if config is not None else ()
    first_convs = tuple(_names(config.first_conv)) if config is not None else ()
    features = "num_classes" not in options
    kept = {k: v for k, v in options.items() if k not in (*SET_HERE, "num_classes")}
    try:
        with torch.device("meta"):  # shapes only: the reference costs no memory
            reference = timm.create_model(
                name,
                pretrained=False,
                num_classes=0 if features else options["num_classes"],
                **kept,
            )
    except TypeError as error:
        raise unknown_argument(name, error) from None
    state = read_state_dict(path)
    if features:
        state = without(state, classifier)
    adapt_first_convs(state, first_convs, options["in_chans"], path)
    check_fits(reference, name, state, path, strict)
    input_size = (options["in_chans"], *(config.input_size[1:] if config else (224, 224)))
    return {"pretrained_cfg_overlay": {"state_dict": state, "input_size": input_size}}


def _names(value: str | tuple[str, ...] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def frozen_parts(
    model: nn.Module, level_modules: list[str], stages: int
) -> tuple[list[nn.Parameter], list[str]]:
    """The parameters ``frozen_stages`` freezes, and the names of the modules made of nothing
    else (kept in eval mode). In the order the feature model registers its modules (the order data flows
    through them): the stem is everything before the first returned level's module; stage k
    ends with the k-th returned level's module and everything inside it."""
    if stages == -1:
        return [], []
    if not 0 <= stages <= len(level_modules):
        raise ValueError(
            f"frozen_stages must be -1 (none) to {len(level_modules)} (all returned levels); "
            f"got {stages}"
        )
    order = [name for name, _ in model.named_modules()]
    if stages == 0:
        end = order.index(_module_path(model, level_modules[0]))
    else:
        last = _module_path(model, level_modules[stages - 1])
        end = 1 + max(i for i, n in enumerate(order) if n == last or n.startswith(last + "."))
    frozen = [
        parameter
        for module in list(model.modules())[:end]
        for parameter in module.parameters(recurse=False)
    ]
    ids = {id(p) for p in frozen}
    modules = [
        name
        for name, module in model.named_modules()
        if any(True for _ in module.parameters()) and all(id(p) in ids for p in module.parameters())
    ]
    return frozen, modules


def _module_path(model: nn.Module, name: str) -> str:
    """Where feature level module ``name`` (timm's path in the full model) sits in the feature
    model: as is, flattened (``stages.0`` -> ``stages_0``) or under the getter's ``model.``."""
    for candidate in (name, name.replace(".", "_", 1), f"model.{name}"):
        try:
            model.get_submodule(candidate)
            return candidate
        except AttributeError:
            continue
    raise ValueError(f"frozen_stages: cannot find the module '{name}' of a feature level")
