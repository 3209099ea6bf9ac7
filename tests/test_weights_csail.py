"""``segkit convert --from csail``: a CSAIL semantic-segmentation-pytorch model (deep-stem dilated
ResNet encoder + ppm_deepsup decoder) becomes a segkit checkpoint that gives the same outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from original_formats import CsailPPMDeepsup, csail_encoder
from PIL import Image
from weights_helpers import randomise_norms, with_sync_bn_buffers, wrapped

import segkit
from segkit.cli import main
from segkit.errors import SegkitError
from segkit_plugins.ade20k.dataset import ADE20K, ADE20K25

CONFIGS = Path(__file__).parent.parent / "configs" / "csail"
FC_DIM = {18: 512, 50: 2048, 101: 2048}


def original_model(depth: int, seed: int):
    torch.manual_seed(seed)
    encoder = randomise_norms(csail_encoder(depth), seed).eval()
    decoder = randomise_norms(CsailPPMDeepsup(num_class=150, fc_dim=FC_DIM[depth]), seed + 1).eval()
    with torch.no_grad():  # confident logits, as a trained model's: predictions vary over the image
        decoder.conv_last[4].weight.mul_(40)
    return encoder, decoder


def save_csail_files(folder: Path, encoder, decoder, old_torch: bool, data_parallel: bool):
    """The encoder and decoder files as the CSAIL code writes them."""
    encoder_state = with_sync_bn_buffers(encoder.state_dict(), old_torch)
    decoder_state = with_sync_bn_buffers(decoder.state_dict(), old_torch)
    if data_parallel:
        encoder_state, decoder_state = wrapped(encoder_state), wrapped(decoder_state)
    paths = folder / "encoder_epoch_20.pth", folder / "decoder_epoch_20.pth"
    torch.save(encoder_state, paths[0])
    torch.save(decoder_state, paths[1])
    return paths


@pytest.fixture(scope="module")
def csail_r50(tmp_path_factory):
    folder = tmp_path_factory.mktemp("csail_r50")
    encoder, decoder = original_model(50, seed=0)
    files = save_csail_files(folder, encoder, decoder, old_torch=False, data_parallel=False)
    out = folder / "r50.pt"
    status = main(
        [
            "convert",
            "--from",
            "csail",
            *map(str, files),
            "--config",
            str(CONFIGS / "ppm_deepsup_r50_ade20k.yaml"),
            "--out",
            str(out),
        ]
    )
    assert status == 0
    return encoder, decoder, files, out


@pytest.fixture(scope="module")
def csail_r18(tmp_path_factory):
    """A file from before PyTorch 0.4.1 (no num_batches_tracked), saved inside DataParallel."""
    folder = tmp_path_factory.mktemp("csail_r18")
    encoder, decoder = original_model(18, seed=10)
    files = save_csail_files(folder, encoder, decoder, old_torch=True, data_parallel=True)
    out = folder / "r18.pt"
    status = main(
        [
            "convert",
            "--from",
            "csail",
            *map(str, files),
            "--config",
            str(CONFIGS / "ppm_deepsup_r18_ade20k.yaml"),
            "--out",
            str(out),
        ]
    )
    assert status == 0
    return encoder, decoder, files, out


def converted_model(config: Path, checkpoint: Path):
    """The model of ``config`` initialised through ``model.pretrained`` (the checkpoint)."""
    return segkit.build_model(segkit.load_config(config, [f"model.pretrained={checkpoint}"])).eval()


@pytest.mark.parametrize("depth", [18, 50])
def test_converted_model_gives_the_original_outputs(depth, csail_r18, csail_r50):
    encoder, decoder, _, checkpoint = csail_r18 if depth == 18 else csail_r50
    model = converted_model(CONFIGS / f"ppm_deepsup_r{depth}_ade20k.yaml", checkpoint)
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(depth))
    with torch.no_grad():
        expected_main, expected_aux = decoder(encoder(images), (64, 64))
        main_logits = model(images)["main"]
        aux_logits = F.interpolate(
            model.aux_heads[0](model.backbone(images)[2]),
            (64, 64),
            mode="bilinear",
            align_corners=False,
        )
    assert expected_main.abs().max() > 0.05  # the comparison is not between zeros
    torch.testing.assert_close(main_logits, expected_main, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(aux_logits, expected_aux, atol=1e-5, rtol=1e-5)


def test_checkpoint_holds_the_model_config_classes_and_provenance(csail_r50):
    _, _, files, checkpoint = csail_r50
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == 0
    assert saved["config"]["model"]["head"]["channels"] == 512
    assert saved["classes"] == ADE20K.classes and len(saved["classes"]) == 150
    assert [tuple(c) for c in saved["palette"]] == ADE20K.palette
    assert saved["converted_from"]["format"] == "csail"
    assert [f["name"] for f in saved["converted_from"]["files"]] == [p.name for p in files]
    assert all(len(f["sha256"]) == 64 for f in saved["converted_from"]["files"])
    assert not [k for k in saved["model"] if "_tmp_running" in k or "_running_iter" in k]
    assert {k.split(".")[0] for k in saved["model"]} == {"backbone", "head", "aux_heads"}


@pytest.mark.parametrize("depth", [18, 50, 101])
def test_configs_have_exactly_the_csail_parameters(depth):
    config = segkit.load_config(CONFIGS / f"ppm_deepsup_r{depth}_ade20k.yaml")
    with torch.device("meta"):
        model = segkit.build_model(config)
        encoder, decoder = (
            csail_encoder(depth),
            CsailPPMDeepsup(num_class=150, fc_dim=FC_DIM[depth]),
        )

    def count(*modules):
        return sum(p.numel() for m in modules for p in m.parameters())

    assert count(model.backbone) == count(encoder)
    assert count(model.head, model.aux_heads) == count(decoder)
    if depth == 50:
        assert count(model.head, model.aux_heads) == 27_947_308
        assert count(model.backbone) == 23_631_808


def test_files_of_another_depth_are_refused_with_the_mismatched_keys(csail_r50, tmp_path, capsys):
    _, _, files, _ = csail_r50
    out = tmp_path / "wrong.pt"
    status = main(
        [
            "convert",
            "--from",
            "csail",
            *map(str, files),
            "--config",
            str(CONFIGS / "ppm_deepsup_r18_ade20k.yaml"),
            "--out",
            str(out),
        ]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "the weights do not fit the model" in err and "ppm_deepsup_r18_ade20k.yaml" in err
    assert "unexpected (" in err and "backbone.layer1.0.conv3.weight" in err
    assert "wrong shape" in err and "Traceback" not in err
    assert not out.exists()


def test_encoder_and_decoder_in_the_wrong_order_are_named(csail_r50, tmp_path, capsys):
    _, _, (encoder, decoder), _ = csail_r50
    status = main(
        [
            "convert",
            "--from",
            "csail",
            str(decoder),
            str(encoder),
            "--config",
            str(CONFIGS / "ppm_deepsup_r50_ade20k.yaml"),
            "--out",
            str(tmp_path / "x.pt"),
        ]
    )
    assert status == 2
    assert "give the ENCODER first, then the DECODER" in capsys.readouterr().err


def test_csail_needs_two_files_and_a_config(csail_r50, tmp_path, capsys):
    _, _, (encoder, decoder), _ = csail_r50
    assert (
        main(["convert", "--from", "csail", str(encoder), "--config", "x.yaml", "--out", "o.pt"])
        == 2
    )
    assert "takes two files, ENCODER then DECODER" in capsys.readouterr().err
    assert main(["convert", "--from", "csail", str(encoder), str(decoder), "--out", "o.pt"]) == 2
    assert "--from csail needs --config" in capsys.readouterr().err


def test_decoder_file_given_to_model_pretrained_says_to_convert(csail_r50, tmp_path):
    _, _, (_, decoder), _ = csail_r50
    config = segkit.load_config(
        CONFIGS / "ppm_deepsup_r18_ade20k.yaml", [f"model.pretrained={decoder}"]
    )
    with pytest.raises(SegkitError, match="looks like a CSAIL decoder: convert it"):
        segkit.build_model(config)


def test_encoder_file_initialises_a_deep_stem_backbone_directly(csail_r18):
    """``model.backbone.pretrained`` takes a CSAIL encoder as it is: the DataParallel prefix and
    the synchronized-BN buffers are taken off, missing batch counters start at 0."""
    encoder, _, (encoder_file, _), _ = csail_r18
    backbone = segkit.build(
        "backbone",
        {"type": "resnet18", "stem": "deep", "output_stride": 8, "pretrained": str(encoder_file)},
    ).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(backbone(images), encoder(images)):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_predict_with_merge_matches_the_original_model_merged_by_hand(csail_r18, tmp_path):
    """The whole path a seed-project user takes: CSAIL files -> segkit convert -> segkit predict
    --merge ade20k25 on an image file, against the original network with the seed's merge."""
    encoder, decoder, _, checkpoint = csail_r18
    config = tmp_path / "fp32.yaml"
    config.write_text(
        f"_base_: {CONFIGS / 'ppm_deepsup_r18_ade20k.yaml'}\n"
        "train: {precision: fp32, device: cpu}\n",
        encoding="utf-8",
    )
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    out = tmp_path / "predictions"
    assert (
        main(
            [
                "predict",
                str(config),
                "--checkpoint",
                str(checkpoint),
                str(tmp_path / "photo.png"),
                "--out",
                str(out),
                "--merge",
                "ade20k25",
            ]
        )
        == 0
    )

    # the original: RGB / 255, ImageNet mean and std, softmax, sum over the merge groups
    image = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255).unsqueeze(0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        probabilities = decoder(encoder((image - mean) / std), (64, 64))[0].softmax(dim=1)
    merged = ADE20K25.label_map.merge_probabilities(probabilities)[0]
    expected = merged.argmax(dim=0).numpy()
    top2 = merged.topk(2, dim=0).values
    clear = (top2[0] - top2[1] > 1e-4).numpy()  # pixels whose group no rounding can change
    with Image.open(out / "photo.png") as predicted:
        labels = np.asarray(predicted)
    assert clear.mean() > 0.95
    assert (labels[clear] == expected[clear]).all()
    assert len(np.unique(labels)) > 1, "a constant prediction would prove little"
