"""Active learning by diversity: pooled backbone features and the k-center greedy order, against direct computations."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from segdino_monai.apps.monailabel.diversity import image_features, k_center_greedy, pool_features
from segdino_monai.networks import SegDINO
from segdino_monai.workflows.configs import get_transforms
from tests.conftest import TINY_VIT


def reference_order(candidates: np.ndarray, centers: np.ndarray, count: int) -> list[int]:
    """k-center greedy written out: each step, the candidate whose nearest chosen or labelled point is farthest."""
    chosen: list[int] = []
    for _ in range(count):
        best, best_distance = None, -1.0
        for i, point in enumerate(candidates):
            if i in chosen:
                continue
            others = [*centers, *(candidates[j] for j in chosen)]
            if others:
                distance = min(math.dist(point, other) for other in others)
            else:  # nothing labelled: distance to the candidates' mean
                distance = math.dist(point, candidates.mean(axis=0))
            if distance > best_distance:
                best, best_distance = i, distance
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("labelled", [0, 1, 7])
def test_k_center_greedy_order_equals_the_written_out_computation(labelled):
    rng = np.random.default_rng(labelled)
    candidates, centers = rng.normal(size=(25, 6)), rng.normal(size=(labelled, 6))
    order = k_center_greedy(torch.from_numpy(candidates), torch.from_numpy(centers).reshape(labelled, 6))
    assert order == reference_order(candidates, centers, 25)
    assert sorted(order) == list(range(25))
    assert k_center_greedy(torch.from_numpy(candidates), torch.from_numpy(centers).reshape(labelled, 6), 4) == order[:4]


def test_k_center_greedy_picks_the_far_cluster_first_and_the_labelled_twin_last():
    centers = torch.tensor([[0.0, 0.0]])
    candidates = torch.tensor([[0.1, 0.0], [5.0, 5.0], [0.0, 0.0], [-3.0, 0.0]])
    assert k_center_greedy(candidates, centers) == [1, 3, 0, 2]
    assert k_center_greedy(candidates[:0], centers) == []


def test_pooled_features_are_the_unit_scaled_layer_means():
    features = torch.randn(2, 4, 8, 3, 5)  # images, taps, channels, h, w
    pooled = pool_features(features)
    assert pooled.shape == (2, 32)
    for image in range(2):
        expected = []
        for tap in range(4):
            mean = features[image, tap].reshape(8, -1).mean(dim=1)
            expected.append(mean / mean.norm() / 2)  # sqrt(4 taps)
        torch.testing.assert_close(pooled[image], torch.cat(expected))
        assert pooled[image].norm().item() == pytest.approx(1.0)


def test_image_features_pool_the_backbone_and_are_computed_once(fixtures_dir, tmp_path, caplog):
    images = sorted((fixtures_dir / "endoscopy" / "kvasir_seg_256" / "images").glob("*.jpg"))[:3]
    torch.manual_seed(0)
    network = SegDINO(backbone_kwargs=TINY_VIT).eval()
    _, evaluate = get_transforms("endoscopy", spatial_size=(64, 64))
    with caplog.at_level(logging.INFO, logger="segdino_monai.apps.monailabel.diversity"):
        pooled = image_features(images, network, evaluate, tmp_path)
    assert "computed the backbone features of 3 images" in caplog.text
    with torch.no_grad():
        for index, path in enumerate(images):
            direct = torch.stack(network.backbone(evaluate({"image": str(path)})["image"][None]), dim=1)
            # the cache stores float16 features
            torch.testing.assert_close(pooled[index], pool_features(direct.half())[0], atol=1e-3, rtol=1e-3)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="segdino_monai.apps.monailabel.diversity"):
        again = image_features(images, network, evaluate, tmp_path)
    assert "computed" not in caplog.text
    torch.testing.assert_close(again, pooled)
