"""kNN voting stays on the device of its inputs (a brute-force GPU search votes on the GPU).

Regression: ``weighted_votes`` allocated its score table on the CPU whatever the device of the
similarities, so CUDA neighbours failed in ``scatter_add_`` (found for the GPU check, issue 17).
The ``meta`` device stands in for CUDA on a machine without one.
"""
import math

import torch

from ssl_ext.benchmarks.knn import knn_scores, weighted_votes


def test_votes_are_exp_similarity_sums_per_class():
    sims = torch.tensor([[0.9, 0.5, 0.1]])
    labels = torch.tensor([[2, 0, 2]])
    votes = weighted_votes(sims, labels, k=3, temperature=1.0, num_classes=3)
    expected = torch.tensor([[math.exp(0.5), 0.0, math.exp(0.9) + math.exp(0.1)]])
    assert torch.allclose(votes, expected)
    assert torch.allclose(weighted_votes(sims, labels, k=1, temperature=0.5, num_classes=3),
                          torch.tensor([[0.0, 0.0, math.exp(1.8)]]))


def test_votes_live_where_the_similarities_do():
    sims, labels = torch.rand(4, 5, device="meta"), torch.randint(0, 3, (4, 5), device="meta")
    votes = weighted_votes(sims, labels, k=2, temperature=0.07, num_classes=3)
    assert votes.device.type == "meta" and votes.shape == (4, 3) and votes.dtype == sims.dtype


def test_labels_follow_the_neighbour_indices():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    queries = torch.tensor([[1.0, 0.1]])
    scores = knn_scores(train, torch.tensor([0, 1, 0]), queries, ks=[1, 3], temperature=1.0, num_classes=2)
    assert scores[1].argmax(1).tolist() == [0] and scores[3].shape == (1, 2)
