"""Weighted kNN (DINO's votes) through faiss against hand values and a brute-force torch reference."""
import math

import pytest
import torch
import torch.nn.functional as F

from ssl_ext.benchmarks.knn import faiss_uses_gpu, knn_scores, nearest_neighbours


def brute_force_votes(train, train_labels, queries, k, temperature, num_classes):
    """Independent reference: full similarity matrix, sort, then a per-query loop over neighbours."""
    train, queries = F.normalize(train.double(), dim=1), F.normalize(queries.double(), dim=1)
    sims = queries @ train.T
    votes = torch.zeros(queries.shape[0], num_classes, dtype=torch.float64)
    order = sims.argsort(dim=1, descending=True)
    for q in range(queries.shape[0]):
        for j in order[q, :k].tolist():
            votes[q, train_labels[j]] += math.exp(sims[q, j].item() / temperature)
    return votes, order


def test_hand_computed_votes():
    # Unit vectors at known angles: similarities are cosines we can write down.
    angles = torch.tensor([0.0, 0.5, 1.0, 3.0])
    train = torch.stack([angles.cos(), angles.sin()], dim=1) * torch.tensor([[2.0], [1.0], [5.0], [1.0]])
    labels = torch.tensor([0, 1, 1, 0])
    query = torch.tensor([[1.0, 0.0]])
    scores = knn_scores(train, labels, query, ks=[1, 2, 3], temperature=0.5, num_classes=2)
    c = [math.cos(a) for a in (0.0, 0.5, 1.0)]
    assert scores[1][0].tolist() == pytest.approx([math.exp(c[0] / 0.5), 0.0], rel=1e-6)
    assert scores[2][0].tolist() == pytest.approx([math.exp(c[0] / 0.5), math.exp(c[1] / 0.5)], rel=1e-6)
    assert scores[3][0].tolist() == pytest.approx([math.exp(c[0] / 0.5), math.exp(c[1] / 0.5) + math.exp(c[2] / 0.5)], rel=1e-6)


@pytest.mark.parametrize("num_classes", [3, 11])
def test_faiss_matches_brute_force_exactly(num_classes):
    generator = torch.Generator().manual_seed(num_classes)
    train = torch.randn(600, 24, generator=generator)
    labels = torch.randint(0, num_classes, (600,), generator=generator)
    queries = torch.randn(150, 24, generator=generator)
    ks = [1, 10, 20, 100, 200]
    scores = knn_scores(train, labels, queries, ks, temperature=0.07, num_classes=num_classes, query_batch_size=64)
    for k in ks:
        reference, order = brute_force_votes(train, labels, queries, k, 0.07, num_classes)
        assert torch.equal(scores[k].argmax(dim=1), reference.argmax(dim=1)), k
        assert torch.allclose(scores[k].double(), reference, rtol=1e-4, atol=0), k
    _, ids = nearest_neighbours(F.normalize(train, dim=1), F.normalize(queries, dim=1), 200, query_batch_size=64)
    assert torch.equal(ids, order[:, :200])


def test_k_larger_than_the_train_set_uses_every_neighbour():
    train, labels = torch.randn(5, 4), torch.tensor([0, 1, 1, 2, 2])
    query = torch.randn(3, 4)
    scores = knn_scores(train, labels, query, ks=[200], temperature=0.1, num_classes=3)
    reference, _ = brute_force_votes(train, labels, query, 5, 0.1, 3)
    assert torch.allclose(scores[200].double(), reference, rtol=1e-4)


def test_bad_settings_are_named():
    train, labels = torch.randn(5, 4), torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match="TEMPERATURE"):
        knn_scores(train, labels, train, ks=[1], temperature=0.0, num_classes=1)
    with pytest.raises(ValueError, match="KNN.K"):
        knn_scores(train, labels, train, ks=[0], temperature=0.1, num_classes=1)
    with pytest.raises(ValueError, match="FAISS_DEVICE"):
        faiss_uses_gpu("gpu0")
    assert faiss_uses_gpu("cpu") is False
