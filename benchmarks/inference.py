"""How fast does a trained model predict on the CPU, by each way of running it?

For the quickstart model (ResNet-18 + UPerNet) and PSPNet-R50-D8 (random weights: speed does not
depend on them), one 512x512 image at a time, uint8 in and logits at input size out (the
normalisation and the final resize included, as the exported files do them):

- eager fp32: the PyTorch model in fp32, NCHW;
- eager auto: what ``segkit predict`` and ``segkit.load`` use by default (``precision: auto``:
  bf16 autocast on CPUs with AMX or AVX-512-BF16, fp32 elsewhere; channels-last);
- TorchScript, torch.export's program and ONNX (under onnxruntime, fp32 and dynamically quantised
  int8) as written by ``segkit export``'s code;
- and ``Segmenter.predict`` end to end (image in, class map out) at the default settings.

Every way is timed once per round, the rounds interleaved, and medians compared as ratios to
eager fp32 of the same run; these machines are shared, so only ratios are meaningful.

    python benchmarks/inference.py           # both models at 512x512 (a few minutes on 2 cores)
    python benchmarks/inference.py --quick   # the quickstart model at 128x128
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, median, timed, write_results  # noqa: E402

import segkit  # noqa: E402
from segkit.builder import build_model  # noqa: E402
from segkit.engine.precision import resolve_precision  # noqa: E402
from segkit.export import formats  # noqa: E402
from segkit.export.catalog import SUFFIXES  # noqa: E402
from segkit.export.graph import ExportGraph, with_window_pools  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "quickstart (R18 + UPerNet)": ("configs/quickstart.yaml", []),
    "PSPNet-R50-D8": ("configs/pspnet_r50_ade20k.yaml", []),
}
FILE_FORMATS = ("torchscript", "exported", "onnx")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quickstart model at 128x128")
    parser.add_argument("--size", type=int, default=None, help="image side (default 512)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5)")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/inference.json)")
    args = parser.parse_args(argv)
    side = args.size or (128 if args.quick else 512)
    rounds = args.rounds or (2 if args.quick else 5)
    models = dict(list(MODELS.items())[:1]) if args.quick else MODELS
    rows, runs = [], []
    for name, (config_file, overrides) in models.items():
        result = measure_model(name, REPO / config_file, overrides, side, rounds)
        runs.append(result)
        base = result["seconds"]["eager fp32"]
        for way, seconds in result["seconds"].items():
            agreement = result["agreement"].get(way)
            rows.append(
                (
                    name,
                    way,
                    1.0 / seconds,
                    base / seconds,
                    "" if agreement is None else f"{100 * agreement:.2f}%",
                )
            )
    table = format_table(
        ("MODEL", "WAY", "IMAGES/S", "VS EAGER FP32", "ARGMAX AGREEMENT WITH FP32"), rows
    )
    auto = resolve_precision("auto", torch.device("cpu"))
    notes = (
        f"{side}x{side}, batch 1, {rounds} interleaved rounds, medians; auto = {auto.describe()}"
    )
    print(table + "\n" + notes)
    path = write_results(
        "inference",
        {"side": side, "rounds": rounds, "auto_precision": auto.name, "runs": runs},
        table + "\n\n" + notes,
        args.out,
    )
    print(f"wrote {path}")
    return 0


def measure_model(
    name: str, config_file: Path, overrides: list[str], side: int, rounds: int
) -> dict:
    config = segkit.load_config(config_file, [*overrides, "model.pretrained=null"])
    torch.manual_seed(0)
    segmentor = build_model(config).eval()
    mean, std = config["data"]["mean"], config["data"]["std"]
    image = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (1, 3, side, side), np.uint8)
    )
    with tempfile.TemporaryDirectory() as folder:
        ways = runners(segmentor, config, mean, std, image, Path(folder))
        for run in ways.values():  # warm-up: first-call compilation and allocation
            run()
        seconds: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(rounds):
            for way, run in ways.items():
                seconds[way].append(timed(run))
        reference = ways["eager fp32"]().argmax(1)
        agreement = {
            way: (run().argmax(1) == reference).double().mean().item()
            for way, run in ways.items()
            if way != "Segmenter.predict (default)"
        }
    medians = {way: median(values) for way, values in seconds.items()}
    for way, value in medians.items():
        print(f"{name}: {way}: {1 / value:.2f} images/s", flush=True)
    return {"model": name, "seconds": medians, "all_seconds": seconds, "agreement": agreement}


def runners(
    segmentor: torch.nn.Module,
    config: dict,
    mean: list[float],
    std: list[float],
    image: torch.Tensor,
    folder: Path,
) -> dict[str, Callable[[], torch.Tensor]]:
    """Each way of predicting ``image``: a call that returns the logits (or the class map)."""
    fp32 = ExportGraph(segmentor, mean, std).eval()
    auto = resolve_precision("auto", torch.device("cpu"))
    channels_last = ExportGraph(
        _copy(segmentor).to(memory_format=torch.channels_last), mean, std
    ).eval()
    ways: dict[str, Callable[[], torch.Tensor]] = {
        "eager fp32": _no_grad(lambda: fp32(image)),
        f"eager auto ({auto.name}, channels-last)": _no_grad(
            lambda: _in(
                auto, lambda: channels_last(image.contiguous(memory_format=torch.channels_last))
            )
        ),
    }
    for format in FILE_FORMATS:
        path = folder / f"model{SUFFIXES[format]}"
        exported = with_window_pools(segmentor) if format == "onnx" else segmentor
        formats.write(ExportGraph(exported, mean, std).eval(), image, path, format, dynamic=False)
        run = formats.load(path, format)
        ways[format if format != "onnx" else "onnxruntime fp32"] = lambda run=run: run(image)
    quantised = _quantised(folder / "model.onnx")
    if quantised is not None:
        ways["onnxruntime int8 (dynamic)"] = lambda: quantised(image)
    checkpoint = folder / "model.pt"
    torch.save({"model": segmentor.state_dict(), "config": config}, checkpoint)
    segmenter = segkit.load(checkpoint)
    picture = image[0].permute(1, 2, 0).numpy()
    ways["Segmenter.predict (default)"] = lambda: torch.from_numpy(segmenter.predict(picture))
    return ways


def _quantised(onnx_file: Path) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """onnxruntime's dynamic int8 quantisation of the ONNX file, if it takes this model."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = onnx_file.with_name("model.int8.onnx")
    try:
        quantize_dynamic(str(onnx_file), str(target), weight_type=QuantType.QInt8)
        return formats.load(target, "onnx")
    except Exception as error:  # the quantiser's own limits: report and go on
        print(f"onnxruntime int8: not measured ({type(error).__name__}: {error})", flush=True)
        return None


def _copy(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module)


def _in(precision, function: Callable[[], torch.Tensor]) -> torch.Tensor:
    with precision.autocast():
        return function().float()


def _no_grad(function: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.no_grad():
            return function()

    return run


if __name__ == "__main__":
    sys.exit(main())
