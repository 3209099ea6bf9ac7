"""``segkit convert``: read the original files (never running code from them), rename their
weights into segkit's layout, load them strictly into the model they are for, and write a segkit
file atomically.

Two kinds of file come out (docs/weights.md):

- a **checkpoint** of a whole segmentor (``--from csail``, ``--from drn`` with a DRNSeg file):
  ``model`` (state dict), ``step`` 0, ``config`` (the resolved ``--config``), ``classes`` and
  ``palette`` (those the config's dataset declares), ``converted_from``; what ``segkit eval
  --checkpoint``, ``segkit predict --checkpoint`` and ``model.pretrained`` take;
- a **backbone weight file** (``--from torchvision``, ``--from drn`` with an ImageNet file):
  ``model`` (the backbone's state dict, its ImageNet classifier ``fc`` included), ``backbone``
  (the spec it was checked against), ``converted_from``; what ``model.backbone.pretrained``
  takes.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from pathlib import Path
from typing import Any

from segkit import build, build_model, load_config, registry
from segkit.engine.checkpoint import atomic_save
from segkit.errors import ConfigError, SegkitError
from segkit.files import remove_dead_writers
from segkit.weights import load_into, read_checkpoint, state_dict_of
from segkit_plugins.converters import csail, drn


def run_convert(args) -> int:
    files = [Path(name) for name in args.files]
    out = Path(args.out)
    _check_arguments(args, files, out)
    states = [state_dict_of(read_checkpoint(path), path) for path in files]
    if args.source_format == "csail":
        result = _csail_checkpoint(files, states, args.config)
    elif args.source_format == "drn" and drn.is_drnseg(states[0]):
        result = _drnseg_checkpoint(files[0], states[0], args.config)
    else:
        result = _backbone_file(files[0], states[0], args.config, args.backbone)
    result["converted_from"] = _provenance(args.source_format, files)
    remove_dead_writers(out.parent, out.name)  # of an earlier conversion killed mid-write
    atomic_save(result, out)
    count = sum(v.numel() for k, v in result["model"].items() if not _is_statistic(k))
    sources = " + ".join(path.name for path in files)
    if "config" in result:
        print(
            f"segkit: converted {sources} ({args.source_format}) into the model of {args.config} "
            f"({count:,} weights) and wrote {out}\n"
            f"  use it: segkit predict {args.config} --checkpoint {out} IMAGES --out DIR, "
            f"segkit eval ..., or model.pretrained: {out}"
        )
    else:
        print(
            f"segkit: converted {sources} ({args.source_format}) into backbone "
            f"'{result['backbone']['type']}' ({count:,} weights) and wrote {out}\n"
            f"  use it as model.backbone.pretrained: {out}"
        )
    return 0


def _check_arguments(args, files: list[Path], out: Path) -> None:
    wanted = 2 if args.source_format == "csail" else 1
    if len(files) != wanted:
        what = "two files, ENCODER then DECODER" if wanted == 2 else "one file"
        raise ConfigError(f"--from {args.source_format} takes {what}; got {len(files)}")
    if args.config and args.backbone:
        raise ConfigError("give either --config or --backbone, not both")
    if args.source_format == "csail" and not args.config:
        raise ConfigError(
            "--from csail needs --config, the segkit config of the model "
            "(e.g. configs/csail/ppm_deepsup_r50_ade20k.yaml)"
        )
    if out.resolve() in {path.resolve() for path in files}:
        raise ConfigError(f"--out {out} would overwrite the file being converted")


# ---- whole segmentors ------------------------------------------------------------------------


def _csail_checkpoint(files: list[Path], states: list[dict], config_path: str) -> dict[str, Any]:
    encoder, decoder = states
    if csail.is_decoder(encoder) and not csail.is_decoder(decoder):
        raise ConfigError(
            f"{files[0]} is a CSAIL decoder and {files[1]} an encoder: give the ENCODER first, "
            "then the DECODER"
        )
    state, unknown = csail.segmentor_state(encoder, decoder)
    if unknown:
        raise SegkitError(
            f"{files[1]}: not a CSAIL ppm_deepsup (or ppm) decoder: no segkit name for "
            f"{', '.join(unknown[:6])}{' ...' if len(unknown) > 6 else ''}"
        )
    config, model = _segmentor(config_path)
    return _checkpoint(config, model, state, f"{files[0]} + {files[1]}", config_path)


def _drnseg_checkpoint(path: Path, original: dict, config_path: str | None) -> dict[str, Any]:
    if not config_path:
        raise ConfigError(
            f"{path} is a DRN segmentation (DRNSeg) checkpoint: --config must give the segkit "
            "config of its model (e.g. configs/drn/drnseg_d_22_cityscapes.yaml)"
        )
    config, model = _segmentor(config_path)
    kind = drn.architecture(original)
    built = config["model"]["backbone"]["type"]
    if drn.backbone_architecture(model.backbone) != kind:
        raise ConfigError(
            f"{path} is a DRNSeg with a DRN-{kind.upper()} backbone, but {config_path} builds "
            f"'{built}'; give the config of its DRN-{kind.upper()} (configs/drn/)"
        )
    upsample = getattr(model.head, "upsample", None)
    if "up.weight" in original and upsample != "transposed_conv":
        raise ConfigError(
            f"{path} has the official fixed upsampling 'up' (a transposed conv): set "
            f"model.head.upsample: transposed_conv in {config_path} to reproduce its outputs"
        )
    if "up.weight" not in original and upsample != "bilinear_aligned":
        raise ConfigError(
            f"{path} has no 'up' weights (its model upsampled with nn.UpsamplingBilinear2d): "
            f"set model.head.upsample: bilinear_aligned in {config_path} to reproduce its outputs"
        )
    state, unknown = drn.segmentor_state(original, drn.OFFICIAL_CHILDREN[kind])
    if unknown:
        raise SegkitError(
            f"{path}: not a DRNSeg checkpoint for this backbone: no segkit name for "
            f"{', '.join(unknown[:6])}{' ...' if len(unknown) > 6 else ''}"
        )
    return _checkpoint(config, model, state, str(path), config_path)


def _segmentor(config_path: str):
    """The resolved config and its model, built without reading any pretrained weights."""
    config = load_config(config_path)
    section = {**config["model"], "pretrained": None}
    if "pretrained" in section["backbone"]:
        section["backbone"] = {**section["backbone"], "pretrained": None}
    return config, build_model({**config, "model": section})


def _checkpoint(config: dict, model, state: dict, source: str, config_path: str) -> dict[str, Any]:
    load_into(model, state, f"{source} (converted for {config_path})")
    classes, palette = _declared_classes(config)
    return {
        "model": model.state_dict(),
        "step": 0,
        "config": config,
        "classes": classes,
        "palette": palette,
    }


def _declared_classes(config: dict) -> tuple[list[str] | None, list[list[int]] | None]:
    """The class names and colours the config's dataset declares without its data, if any."""
    for split in ("val", "train"):
        spec = config["data"].get(split)
        if not spec:
            continue
        factory = registry().get("dataset", spec["type"]).load()
        classes = getattr(factory, "classes", None)
        palette = getattr(factory, "palette", None)
        if isinstance(classes, (list, tuple)) and len(classes) == config["model"]["num_classes"]:
            colours = (
                [list(c) for c in palette] if palette and len(palette) == len(classes) else None
            )
            return list(classes), colours
    return None, None


# ---- backbones -------------------------------------------------------------------------------


def _backbone_file(
    path: Path, state: dict, config_path: str | None, name: str | None
) -> dict[str, Any]:
    if config_path:
        spec = dict(load_config(config_path)["model"]["backbone"])
    elif name:
        spec = {"type": name}
    else:
        raise ConfigError(
            f"{path} holds backbone weights: say which backbone with --backbone NAME "
            "(e.g. resnet50, drn_d_22) or --config CONFIG"
        )
    spec.pop("pretrained", None)
    spec.pop("num_classes", None)
    options = dict(spec)
    classifier = state.get("fc.weight")
    if classifier is not None:  # check the ImageNet classifier too, and keep it
        accepted = {p.name for p in registry().get("backbone", spec["type"]).parameters()}
        if "num_classes" in accepted:
            options["num_classes"] = classifier.shape[0]
    backbone = build("backbone", options)
    if drn.backbone_architecture(backbone) == "b":
        raise ConfigError(
            f"{path}: the official DRN code has no DRN-B, and a DRN-C file (same weight names, "
            f"other connections) would give another network in '{spec['type']}'; convert it for "
            "the DRN-C of the same depth (e.g. --backbone drn_c_26)"
        )
    load_into(backbone, state, path)
    return {"model": backbone.state_dict(), "backbone": spec}


# ---- shared ----------------------------------------------------------------------------------


def _provenance(source_format: str, files: list[Path]) -> dict[str, Any]:
    return {
        "format": source_format,
        "files": [{"name": path.name, "sha256": _sha256(path)} for path in files],
        "segkit": version("segkit"),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_statistic(key: str) -> bool:
    """Batch-norm statistics and counters: buffers, not weights."""
    return key.endswith(("num_batches_tracked", "running_mean", "running_var"))
