"""The shape of a segkit config: its sections, their keys, defaults and types.

Each section is a dataclass, so a key's type hint, default and help live in one place and serve
validation, the resolved dump and the config reference in docs/configuration.md alike. A key
that holds a component spec (``{type: NAME, ...}``) is described by a :class:`Slot`: the component
kind, and the core keys that may sit beside the factory's own arguments (for example a head's
``in_index``).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Annotated, Any, Literal

from segkit.constraints import Above, AtLeast, Below, Between, Length, OneOf


@dataclass(frozen=True)
class Slot:
    """Where a component spec goes: its kind, its extra core keys, and whether it is a list."""

    kind: str
    extras: type | None = None
    many: Literal["no", "yes", "either"] = "no"
    least: int = 0  # a list needs at least this many specs


def setting(default: Any = MISSING, help: str = "", slot: Slot | None = None) -> Any:
    """A section key; lists and dicts given as defaults are copied per instance."""
    metadata = {"help": help, "slot": slot}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: _copy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# ---- value types that several keys share ------------------------------------------------------

Count = Annotated[int, AtLeast(1)]
Natural = Annotated[int, AtLeast(0)]
Size = Annotated[list[Annotated[int, AtLeast(1)]], Length(2)]  # [height, width]
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]
InferenceMode = Literal["whole", "slide"]
DeviceName = Annotated[str, OneOf(r"auto|cpu|mps|cuda(:[0-9]+)?", "auto, cpu, cuda, cuda:N or mps")]


# ---- core keys beside a component's own arguments ---------------------------------------------


@dataclass
class HeadPlacement:
    in_index: int | list[int] = setting(
        -1, "which backbone stage(s) feed the head: an index into the feature list, or a list"
    )


@dataclass
class AuxHeadPlacement:
    in_index: int | list[int] = setting(2, "backbone stage(s) feeding the auxiliary head")
    loss_weight: float = setting(0.4, "weight alpha_0 of this head's loss in the total loss")
    loss_decay: bool = setting(
        False, "decay the weight linearly over training: alpha_t = alpha_0 * (1 - t / max_iters)"
    )


@dataclass
class DatasetExtras:
    transforms: list = setting(
        [], "transforms applied in order to image and mask together", Slot("transform", many="yes")
    )


@dataclass
class LossTerm:
    loss_weight: float = setting(1.0, "weight of this term when several losses are summed")


@dataclass
class OptimizerExtras:
    lr_mult: dict[str, float] = setting(
        {}, "learning-rate multipliers by parameter-name prefix, e.g. {head: 10}"
    )
    decay_norm_and_bias: bool = setting(
        True, "apply weight decay to normalisation weights and biases too"
    )


# ---- sections ----------------------------------------------------------------------------------


@dataclass
class ModelSection:
    backbone: dict = setting(help="the backbone", slot=Slot("backbone"))
    head: dict = setting(help="the decode head", slot=Slot("head", HeadPlacement))
    num_classes: Count = setting(help="number of classes the model predicts")
    aux_heads: list = setting(
        [],
        "auxiliary deep-supervision heads, used in training only",
        Slot("head", AuxHeadPlacement, many="yes"),
    )
    pretrained: str | None = setting(
        None, "a segkit checkpoint whose model weights initialise the whole segmentor"
    )


@dataclass
class DataSection:
    train: dict | None = setting(None, "the training dataset", Slot("dataset", DatasetExtras))
    val: dict | None = setting(None, "the validation dataset", Slot("dataset", DatasetExtras))
    root: str | None = setting(
        None, "data root given to every dataset that takes a 'root' and does not set one"
    )
    batch_size: Count = setting(8, "training images per process and iteration")
    val_batch_size: Count = setting(1, "validation images per process and batch")
    workers: Natural = setting(2, "data-loading worker processes per process")
    pin_memory: bool | None = setting(
        None, "pin host memory of batches; default: on when training on CUDA"
    )
    persistent_workers: bool = setting(True, "keep workers alive between validation rounds")
    on_bad_sample: Literal["error", "skip"] = setting(
        "error",
        "a bad sample (unreadable file, mask of the wrong size, labels out of range, image "
        "without mask) stops the run naming the file, or is skipped with a warning",
    )
    mean: Annotated[list[float], Length(least=1)] = setting(
        [123.675, 116.28, 103.53],
        "per-channel mean subtracted from the images, in their own units (0..255, or 0..65535 "
        "for uint16); one value per input channel (model.backbone.in_channels). Default: "
        "ImageNet's RGB mean",
    )
    std: Annotated[list[Annotated[float, Above(0)]], Length(least=1)] = setting(
        [58.395, 57.12, 57.375],
        "per-channel divisor applied after the mean, in the images' units; one per input "
        "channel. Default: ImageNet's RGB std",
    )
    image_dtype: Literal["uint8", "uint16"] = setting(
        "uint8",
        "the images' pixel type: uint8, or uint16 for 16-bit images kept at full depth (every "
        "image must have it; an export takes it)",
    )


# the scalar validation metrics of metrics.jsonl that early stopping can watch
MetricName = Literal["mIoU", "mAcc", "aAcc", "fwIoU", "mDice", "mPrecision"]


@dataclass
class EmaSection:
    decay: Annotated[float, Above(0), Below(1)] | None = setting(
        None,
        "keep an exponential moving average of the weights with this decay (e.g. 0.9999); "
        "validation, best.pt and every checkpoint's model are the average; null = off",
    )
    warmup: bool = setting(
        True,
        "ramp the decay up as min(decay, (1 + t) / (10 + t)) at the t-th update, so that the "
        "average forgets the initial weights in a short run",
    )


@dataclass
class EarlyStopSection:
    patience: Count | None = setting(
        None,
        "end the run after this many validations in a row without improvement; null = off",
    )
    metric: MetricName = setting("mIoU", "the validation metric watched (a metrics.jsonl key)")
    min_delta: Annotated[float, AtLeast(0)] = setting(
        0.0, "an improvement must beat the best value by more than this"
    )
    mode: Literal["max", "min"] = setting("max", "max: higher is better; min: lower is better")


@dataclass
class TrainSection:
    max_iters: Count = setting(1000, "number of optimizer steps")
    eval_interval: Natural = setting(
        500, "validate every N iterations (and at the end); 0 = at end"
    )
    checkpoint_interval: Natural = setting(
        0, "also keep a numbered checkpoint every N iterations; 0 = only last.pt and best.pt"
    )
    keep_checkpoints: Count = setting(3, "how many numbered checkpoints to keep")
    log_interval: Count = setting(10, "log training metrics every N iterations")
    device: DeviceName = setting(
        "auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"
    )
    precision: PrecisionName = setting(
        "auto", "auto: bf16 where the hardware is fast at it, fp16 on older GPUs, else fp32"
    )
    channels_last: bool = setting(True, "use the channels-last memory format")
    grad_clip: Annotated[float, Above(0)] | None = setting(
        None, "clip the gradient norm to this value"
    )
    accumulate: Count = setting(1, "accumulate gradients over N batches per optimizer step")
    seed: Annotated[int, Between(0, 2**32 - 1)] = setting(
        0, "seed for python, numpy and torch, and for the data order"
    )
    deterministic: bool = setting(
        False, "deterministic cuDNN algorithms (reproducible on GPUs, but slower); CPUs always are"
    )
    sync_bn: bool | Literal["auto"] = setting(
        "auto",
        "with several processes, batch norm over the global batch: auto = in the components "
        "built with norm: syncbn, true = every batch norm, false = none (one process: never)",
    )
    work_dir: str | None = setting(None, "run directory; default: runs/<config name>")
    ema: EmaSection = setting({}, "an exponential moving average of the weights")
    early_stop: EarlyStopSection = setting({}, "ending the run when validation stops improving")


@dataclass
class EvalSection:
    mode: InferenceMode = setting("whole", "whole image, or sliding windows")
    crop: Size | None = setting(None, "sliding-window size [height, width]")
    stride: Size | None = setting(None, "sliding-window stride [height, width]")
    scales: Annotated[list[Annotated[float, Above(0)]], Length(least=1)] = setting(
        [1.0], "test-time scales, relative to the image size"
    )
    flip: bool = setting(False, "also predict the mirrored image and average")
    window_batch: Count = setting(4, "sliding windows per forward pass (slide mode)")
    panels: Natural = setting(
        4,
        "validation images saved as image | label | prediction panels (predictions/, TensorBoard)",
    )
    ci: bool = setting(
        False,
        "validation keeps every image's confusion matrix and reports 95% bootstrap intervals "
        "of mIoU and each class's IoU (metrics.jsonl, best.pt, the summary)",
    )
    resamples: Annotated[int, AtLeast(10)] = setting(
        1000, "bootstrap resamples of the images for eval.ci (and segkit eval --ci)"
    )
    ci_seed: Annotated[int, Between(0, 2**32 - 1)] = setting(
        0, "seed of the bootstrap's resampling: the same seed draws the same resamples"
    )


@dataclass
class LoggingSection:
    loggers: list = setting(
        [{"type": "progress"}, {"type": "tensorboard"}],
        "loggers observing the run events",
        Slot("logger", many="yes"),
    )


@dataclass
class ConfigSchema:
    model: ModelSection = setting(help="the segmentor")
    data: DataSection = setting({}, "datasets and loading")
    loss: dict | list = setting(
        {"type": "cross_entropy"},
        "the loss, or a list of weighted loss terms",
        Slot("loss", LossTerm, many="either", least=1),
    )
    optimizer: dict = setting(
        {"type": "sgd", "lr": 0.01}, "the optimizer", Slot("optimizer", OptimizerExtras)
    )
    lr_scheduler: dict = setting(
        {"type": "poly"}, "the per-iteration LR schedule", Slot("lr_scheduler")
    )
    train: TrainSection = setting({}, "the training loop")
    eval: EvalSection = setting({}, "evaluation")
    logging: LoggingSection = setting({}, "monitoring")


def core_keys(kind: str, schema: type = ConfigSchema) -> set[str]:
    """Every core key that any slot of ``kind`` allows beside the factory's arguments."""
    keys: set[str] = set()
    for f in fields(schema):
        slot = f.metadata.get("slot")
        if slot is not None and slot.kind == kind and slot.extras is not None:
            keys.update(extra.name for extra in fields(slot.extras))
        if slot is not None and slot.extras is not None:
            keys |= core_keys(kind, slot.extras)
        elif is_section(_hint(schema, f.name)):
            keys |= core_keys(kind, _hint(schema, f.name))
    return keys


def _hint(schema: type, name: str) -> Any:
    import typing

    return typing.get_type_hints(schema, include_extras=True)[name]


def is_section(hint: Any) -> bool:
    return isinstance(hint, type) and hasattr(hint, "__dataclass_fields__")
