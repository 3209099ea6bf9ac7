"""The stand-ins for official networks (used by the converter tests) match the reference's
parameter counts, so converting their weights exercises the real layouts."""

import pytest
from original_formats import CsailPPMDeepsup, csail_encoder, official_drn


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("depth, expected", [(50, 23_631_808), (101, 42_623_936)])
def test_csail_encoder_parameter_count(depth, expected):
    assert count(csail_encoder(depth)) == expected


def test_csail_decoder_parameter_count():
    assert count(CsailPPMDeepsup(num_class=150)) == 27_947_308


@pytest.mark.parametrize(
    "name, expected",
    [
        ("drn_c_26", 21_126_584),
        ("drn_c_58", 41_591_608),
        ("drn_d_22", 16_393_752),
        ("drn_d_105", 54_801_304),
    ],
)
def test_official_drn_parameter_count(name, expected):
    assert count(official_drn(name)) == expected
