"""SegFormer: the MiT backbones and the all-MLP head against the paper's sizes, the official
weight layout, any multi-stage backbone under the head, and short trainings of the quickstart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import segkit
from segkit.cli import main
from segkit.errors import CheckpointError
from segkit_plugins.segformer.head import SegFormerHead
from segkit_plugins.segformer.mit import MixTransformer, mit_b0, mit_b1
from segkit_plugins.segformer.official import official_to_segkit

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs/quickstart.yaml"

# Table 1 of the paper (ADE20K, 150 classes), millions: encoder, decoder, total; and the head's
# embedding dimension C of each variant
PAPER = {
    "mit_b0": (3.4, 0.4, 3.8, 256),
    "mit_b1": (13.1, 0.6, 13.7, 256),
    "mit_b2": (24.2, 3.3, 27.5, 768),
    "mit_b3": (44.0, 3.3, 47.3, 768),
    "mit_b4": (60.8, 3.3, 64.1, 768),
    "mit_b5": (81.4, 3.3, 84.7, 768),
}


def millions(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


@pytest.mark.parametrize("variant", sorted(PAPER))
def test_parameter_counts_match_the_papers_table_1(variant):
    """The paper rounds to 0.1M, and its encoder column is its total minus its decoder, both
    rounded: MiT-B0's encoder has 3.32M parameters, printed as 3.8 - 0.4 = 3.4."""
    encoder, decoder, total, channels = PAPER[variant]
    with torch.device("meta"):
        backbone = segkit.build("backbone", {"type": variant})
        head = SegFormerHead(backbone.out_channels, 150, channels=channels)
    assert abs(millions(backbone) + millions(head) - total) < 0.05
    assert abs(millions(head) - decoder) < 0.05
    assert encoder == pytest.approx(total - decoder)
    assert abs(millions(backbone) - encoder) < 0.1


def test_the_classifier_variant_adds_an_imagenet_linear_layer():
    with torch.device("meta"):
        features, classifier = mit_b0(), mit_b0(num_classes=1000)
    assert round((millions(classifier) - millions(features)) * 1e6) == 256 * 1000 + 1000


def test_stages_follow_strides_4_to_32_with_the_variants_widths():
    torch.manual_seed(0)
    backbone = mit_b1(drop_path_rate=0.0).eval()
    assert backbone.out_channels == [64, 128, 320, 512]
    assert backbone.strides == [4, 8, 16, 32]
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(backbone.out_channels, backbone.strides)
    ]


def test_generic_mit_takes_explicit_sizes_and_refuses_inconsistent_ones():
    tiny = MixTransformer(widths=[8, 16], depths=[1, 1], heads=[1, 2], reductions=[2, 1])
    assert tiny.strides == [4, 8] and len(tiny(torch.randn(1, 3, 32, 32))) == 2
    with pytest.raises(ValueError, match="one value per stage"):
        MixTransformer(widths=[8, 16], depths=[1, 1, 1])
    with pytest.raises(
        ValueError, match="heads: a stage of width 160 cannot be split into 3 heads"
    ):
        MixTransformer(heads=[1, 2, 3, 8])


def tiny_mit(**options) -> MixTransformer:
    sizes = {"widths": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "heads": [1, 1, 1, 1]}
    return MixTransformer(**sizes, **options)


def test_stochastic_depth_is_random_in_training_only():
    torch.manual_seed(0)
    backbone = tiny_mit(drop_path_rate=0.5)
    x = torch.randn(4, 3, 32, 32)
    backbone.eval()
    with torch.no_grad():
        assert torch.equal(backbone(x)[-1], backbone(x)[-1])
        backbone.train()
        assert not torch.equal(backbone(x)[-1], backbone(x)[-1])


def official_b0_layout(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Names and shapes of NVlabs' mit_b0.pth, written out from the architecture."""
    widths, depths, reductions = (32, 64, 160, 256), (2, 2, 2, 2), (8, 4, 2, 1)
    shapes: dict[str, tuple[int, ...]] = {}
    previous = 3
    for n, (c, depth, r) in enumerate(zip(widths, depths, reductions), start=1):
        k = 7 if n == 1 else 3
        shapes[f"patch_embed{n}.proj.weight"] = (c, previous, k, k)
        shapes[f"patch_embed{n}.proj.bias"] = (c,)
        shapes[f"patch_embed{n}.norm.weight"] = shapes[f"patch_embed{n}.norm.bias"] = (c,)
        for j in range(depth):
            block = f"block{n}.{j}"
            for norm in ("norm1", "norm2"):
                shapes[f"{block}.{norm}.weight"] = shapes[f"{block}.{norm}.bias"] = (c,)
            shapes[f"{block}.attn.q.weight"], shapes[f"{block}.attn.q.bias"] = (c, c), (c,)
            shapes[f"{block}.attn.kv.weight"], shapes[f"{block}.attn.kv.bias"] = (
                (2 * c, c),
                (2 * c,),
            )
            shapes[f"{block}.attn.proj.weight"], shapes[f"{block}.attn.proj.bias"] = (c, c), (c,)
            if r > 1:
                shapes[f"{block}.attn.sr.weight"] = (c, c, r, r)
                shapes[f"{block}.attn.sr.bias"] = (c,)
                shapes[f"{block}.attn.norm.weight"] = shapes[f"{block}.attn.norm.bias"] = (c,)
            shapes[f"{block}.mlp.fc1.weight"], shapes[f"{block}.mlp.fc1.bias"] = (
                (4 * c, c),
                (4 * c,),
            )
            shapes[f"{block}.mlp.dwconv.dwconv.weight"] = (4 * c, 1, 3, 3)
            shapes[f"{block}.mlp.dwconv.dwconv.bias"] = (4 * c,)
            shapes[f"{block}.mlp.fc2.weight"], shapes[f"{block}.mlp.fc2.bias"] = (c, 4 * c), (c,)
        shapes[f"norm{n}.weight"] = shapes[f"norm{n}.bias"] = (c,)
        previous = c
    shapes["head.weight"], shapes["head.bias"] = (num_classes, widths[-1]), (num_classes,)
    return shapes


@pytest.fixture
def official_b0(tmp_path):
    torch.manual_seed(0)
    state = {name: torch.randn(shape) for name, shape in official_b0_layout().items()}
    path = tmp_path / "mit_b0.pth"
    torch.save(state, path)
    return path, state


def test_official_weights_land_where_the_mapping_says(official_b0):
    path, state = official_b0
    backbone = mit_b0(pretrained=str(path))
    own = backbone.state_dict()
    targets = {name: official_to_segkit(name) for name in state}
    used = {name for name, target in targets.items() if target in own}
    assert set(state) - used == {"head.weight", "head.bias"}, "only the classifier is unused"
    assert {targets[name] for name in used} == set(own), "every model tensor gets a file tensor"
    for name in used:
        assert torch.equal(own[targets[name]], state[name]), name
    assert targets["block3.1.attn.norm.weight"] == "stages.2.blocks.1.attn.sr_norm.weight"
    assert targets["block1.0.mlp.dwconv.dwconv.bias"] == "stages.0.blocks.0.ffn.dwconv.bias"
    assert targets["norm4.bias"] == "stages.3.norm.bias"


def test_official_classifier_loads_into_an_imagenet_model(official_b0):
    path, state = official_b0
    classifier = mit_b0(num_classes=1000, pretrained=str(path))
    assert torch.equal(classifier.classifier.weight, state["head.weight"])
    assert classifier(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def mmseg_layout(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights as MMSegmentation's MiT stores them: layers.{i}.{0,1,2}, q and kv
    joined in in_proj, proj as out_proj, the FFN linears as 1x1 convs, no classifier."""
    converted = {}
    for key, value in official.items():
        stage, _, rest = key.partition(".")
        if key.startswith("head."):
            continue
        if stage.startswith("patch_embed"):
            rest = rest.replace("proj.", "projection.")
            converted[f"layers.{int(stage[-1]) - 1}.0.{rest}"] = value
        elif stage.startswith("norm"):
            converted[f"layers.{int(stage[-1]) - 1}.2.{rest}"] = value
        else:
            block, _, part = rest.partition(".")
            prefix = f"layers.{int(stage[-1]) - 1}.1.{block}"
            if part.startswith("attn.kv."):
                continue
            if part.startswith("attn.q."):
                name = part.rpartition(".")[2]
                kv = official[key.replace("attn.q.", "attn.kv.")]
                converted[f"{prefix}.attn.attn.in_proj_{name}"] = torch.cat([value, kv])
                continue
            part = part.replace("attn.proj.", "attn.attn.out_proj.")
            for old, new in (("fc1.", "0."), ("dwconv.dwconv.", "1."), ("fc2.", "4.")):
                part = part.replace(f"mlp.{old}", f"ffn.layers.{new}")
            if part.endswith(("layers.0.weight", "layers.4.weight")):
                value = value[..., None, None]
            converted[f"{prefix}.{part}"] = value
    return converted


def test_mmsegmentation_layout_gives_the_same_model_as_the_official_file(tmp_path, official_b0):
    path, state = official_b0
    mmseg = tmp_path / "mit_b0_mmseg.pth"
    torch.save(mmseg_layout(state), mmseg)
    expected = mit_b0(pretrained=str(path)).state_dict()
    loaded = mit_b0(pretrained=str(mmseg)).state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_segkit_layout_round_trips_and_a_wrong_variant_is_refused(tmp_path, official_b0):
    path, state = official_b0
    saved = tmp_path / "own.pt"
    torch.save(mit_b0(pretrained=str(path)).state_dict(), saved)
    reloaded = mit_b0(pretrained=str(saved))
    assert torch.equal(reloaded.stages[1].blocks[0].attn.q.weight, state["block2.0.attn.q.weight"])
    refused = pytest.raises(
        CheckpointError, match=r"mit_b0.pth: the weights do not fit.*wrong shape"
    )
    with refused, torch.device("meta"):
        mit_b1(pretrained=str(path))


def test_head_fuses_every_stage_at_the_finest():
    head = SegFormerHead([64, 128, 256, 512], 5, channels=32).eval()
    features = [
        torch.randn(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate((64, 128, 256, 512))
    ]
    assert head(features).shape == (1, 5, 32, 32)
    assert head.fuse.conv.in_channels == 4 * 32
    with pytest.raises(ValueError, match="several backbone stages"):
        SegFormerHead(512, 5)


@pytest.mark.parametrize(
    "backbone",
    [
        {"type": "resnet18"},
        {"type": "drn_d_22"},
        {"type": "mit", "widths": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "heads": [1] * 4},
    ],
    ids=lambda b: b["type"],
)
def test_head_works_on_any_multi_stage_backbone(backbone):
    model = segkit.build_model(
        {
            "model": {
                "num_classes": 3,
                "backbone": backbone,
                "head": {"type": "segformer", "in_index": [0, 1, 2, 3], "channels": 16},
            }
        }
    ).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64))["main"].shape == (1, 3, 64, 64)


def short_quickstart(tmp_path: Path, model: list[str], iters: int = 4) -> dict:
    """Train the quickstart for a few iterations at 64x64 and return its validation line."""
    run = tmp_path / "run"
    overrides = [
        *model,
        f"train.max_iters={iters}",
        f"train.eval_interval={iters}",
        "data.batch_size=2",
        "data.workers=0",
        "data.train.size=[64, 64]",
        "data.val.size=[64, 64]",
        "data.val.length=4",
        "train.precision=fp32",
    ]
    assert main(["train", str(QUICKSTART), *overrides, "--work-dir", str(run)]) == 0
    assert (run / "checkpoints" / "last.pt").is_file()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [line for line in lines if line["split"] == "train"]
    assert train and all(torch.isfinite(torch.tensor(line["loss"])) for line in train)
    (val,) = [line for line in lines if line["split"] == "val"]
    return val


@pytest.mark.slow
def test_quickstart_trains_with_mit_b0_and_the_segformer_head(tmp_path):
    val = short_quickstart(
        tmp_path,
        [
            "model.backbone={type: mit_b0}",
            "model.head={type: segformer, in_index: [0, 1, 2, 3], channels: 32}",
            "model.aux_heads=[]",
        ],
    )
    assert 0 <= val["mIoU"] <= 1 and val["step"] == 4


@pytest.mark.slow
def test_quickstart_trains_with_the_segformer_head_on_resnet18(tmp_path):
    val = short_quickstart(
        tmp_path, ["model.head={type: segformer, in_index: [0, 1, 2, 3], channels: 32}"]
    )
    assert 0 <= val["mIoU"] <= 1 and val["step"] == 4
