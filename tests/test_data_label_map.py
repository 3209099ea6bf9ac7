"""LabelMap: many-to-one relabelling of masks and merging of class probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_data_ade20k import MERGED

from segkit.label_map import LabelMap
from segkit_plugins.ade20k.dataset import ade20k25_label_map


def test_inline_mapping_relabels_numpy_and_torch_masks():
    mapping = LabelMap({0: 0, 1: 0, 2: 1, 3: 255})
    mask = np.array([[0, 1], [2, 3], [255, 2]], dtype=np.uint8)
    expected = np.array([[0, 0], [1, 255], [255, 1]])
    assert np.array_equal(mapping.relabel(mask), expected)
    relabelled = mapping.relabel(torch.from_numpy(mask).long())
    assert relabelled.dtype == torch.int64 and torch.equal(relabelled, torch.from_numpy(expected))
    assert mapping.num_targets == 2


def test_255_is_ignore_unless_the_mapping_lists_it():
    assert LabelMap({0: 0}).relabel(np.array([0, 255])).tolist() == [0, 255]
    assert LabelMap({0: 0, 255: 1}).relabel(np.array([0, 255])).tolist() == [0, 1]


def test_values_missing_from_the_mapping_are_named():
    mapping = LabelMap({0: 0, 1: 1})
    with pytest.raises(ValueError, match=r"mask values 2, 7 are not in the mapping"):
        mapping.relabel(np.array([0, 2, 7, 1, 2]))


@pytest.mark.parametrize(
    "bad, message",
    [({1: 300}, "outside 0..255"), ({"x": 1}, "must be an integer"), ({-2: 1}, "outside 0..65535")],
)
def test_bad_mappings_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        LabelMap(bad)


def test_csv_and_yaml_files(tmp_path):
    csv_file = tmp_path / "map.csv"
    csv_file.write_text("source,target,comment\n0,1,a\n1,0,b\n2,,dropped\n", encoding="utf-8")
    yaml_file = tmp_path / "map.yaml"
    yaml_file.write_text("0: 1\n1: 0\n2: null\n", encoding="utf-8")
    for spec in (str(csv_file), "map.yaml"):
        mapping = LabelMap.from_spec(spec, base=tmp_path)
        assert mapping.relabel(np.array([0, 1, 2])).tolist() == [1, 0, 255]
    duplicated = tmp_path / "twice.csv"
    duplicated.write_text("source,target\n0,1\n0,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"twice.csv:3: source value 0 is listed twice"):
        LabelMap.from_file(duplicated)
    with pytest.raises(ValueError, match="not found"):
        LabelMap.from_spec("nope.csv", base=tmp_path)


def test_merge_probabilities_sums_groups_and_discards_dropped_classes():
    mapping = LabelMap({0: 1, 1: 0, 2: 1, 3: 255})
    probabilities = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 4, 1, 1).expand(2, 4, 3, 5)
    merged = mapping.merge_probabilities(probabilities)
    assert merged.shape == (2, 2, 3, 5)
    assert torch.allclose(merged[0, :, 0, 0], torch.tensor([0.2, 0.4]))
    with pytest.raises(ValueError, match="does not list 4"):
        mapping.merge_probabilities(torch.rand(1, 5, 2, 2))


def test_ade20k_150_to_25_map_matches_the_corrected_merge():
    mapping = ade20k25_label_map()
    expected = {
        label - 1: target for target, labels in enumerate(MERGED.values()) for label in labels
    }
    for index in range(150):
        assert mapping.mapping[index] == expected.get(index, 255), f"ADE20K class index {index}"
    assert mapping.num_targets == 25


def test_ade20k_probabilities_merge_into_25_classes():
    mapping = ade20k25_label_map()
    logits = torch.randn(1, 150, 4, 4)
    probabilities = logits.softmax(1)
    merged = mapping.merge_probabilities(probabilities)
    road = [label - 1 for label in MERGED["road"]]
    assert torch.allclose(merged[:, 6], probabilities[:, road].sum(1))
    dropped = [i for i in range(150) if mapping.mapping[i] == 255]
    assert torch.allclose(merged.sum(1), 1 - probabilities[:, dropped].sum(1), atol=1e-6)
