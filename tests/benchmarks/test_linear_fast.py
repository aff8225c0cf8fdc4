"""The batched lr x wd grid of linear heads equals training each head alone with torch.optim.SGD."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_ext.benchmarks.linear_fast import INIT_STD, standardize, top1_per_head, train_linear_grid
from ssl_ext.benchmarks.selection import stratified_holdout


def train_one_head_with_torch_sgd(x, y, num_classes, head, lr, wd, epochs, batch, momentum, nesterov, factor, seed, heads, affine):
    """Reference: the same initial weights and batch order, one head's parameters, torch.optim.SGD."""
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(heads, x.shape[1], num_classes, generator=generator) * INIT_STD)[head].clone().requires_grad_(True)
    bias = torch.zeros(num_classes, requires_grad=True)
    scale = torch.ones(x.shape[1], requires_grad=True)
    shift = torch.zeros(x.shape[1], requires_grad=True)
    no_decay = [bias, scale, shift] if affine else [bias]
    optimizer = torch.optim.SGD(
        [{"params": [weight], "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, momentum=momentum, nesterov=nesterov,
    )
    total, step = epochs * math.ceil(x.shape[0] / batch), 0
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], batch):
            index = order[start : start + batch]
            for group in optimizer.param_groups:
                group["lr"] = lr * factor(step / total)
            inputs = x[index] * scale + shift if affine else x[index]
            loss = F.cross_entropy(inputs @ weight + bias, y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    return weight.detach(), bias.detach(), scale.detach(), shift.detach()


@pytest.mark.parametrize("nesterov,affine", [(False, False), (True, False), (True, True)])
def test_grid_equals_independent_sgd_runs(nesterov, affine):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(70, 6, generator=generator)
    y = torch.randint(0, 4, (70,), generator=generator)
    lrs, wds = [0.05, 0.5], [0.0, 0.01, 0.1]
    cosine = lambda where: 0.5 * (1 + math.cos(math.pi * where))  # noqa: E731
    grid = train_linear_grid(
        x, y, 4, lrs, wds, epochs=3, batch_size=16, momentum=0.9, nesterov=nesterov, lr_factor=cosine, seed=5,
        learn_affine=affine,
    )
    assert grid.settings == [(lr, wd) for lr in lrs for wd in wds]
    for head, (lr, wd) in enumerate(grid.settings):
        weight, bias, scale, shift = train_one_head_with_torch_sgd(
            x, y, 4, head, lr, wd, 3, 16, 0.9, nesterov, cosine, 5, len(grid.settings), affine
        )
        assert torch.allclose(grid.weight[head], weight, rtol=1e-4, atol=1e-6), (lr, wd)
        assert torch.allclose(grid.bias[head], bias, rtol=1e-4, atol=1e-6), (lr, wd)
        if affine:
            assert torch.allclose(grid.scale[head], scale, rtol=1e-4, atol=1e-6), (lr, wd)
            assert torch.allclose(grid.shift[head], shift, rtol=1e-4, atol=1e-6), (lr, wd)
            assert not torch.allclose(scale, torch.ones_like(scale))  # the affine did train
    scores = grid.scores(x)
    assert scores.shape == (6, 70, 4)
    inputs = x * grid.scale[2] + grid.shift[2] if affine else x
    assert torch.allclose(scores[2], inputs @ grid.weight[2] + grid.bias[2], atol=1e-5)


def test_separable_data_is_learned_and_selection_helpers():
    generator = torch.Generator().manual_seed(1)
    centers = torch.randn(5, 16, generator=generator) * 4
    y = torch.arange(500) % 5
    x = centers[y] + torch.randn(500, 16, generator=generator)
    grid = train_linear_grid(x, y, 5, [0.0, 0.1], [0.0], epochs=5, batch_size=50)
    accuracy = top1_per_head(grid.scores(x), y)
    assert accuracy[1] > 99.0 and accuracy[0] < 60.0  # lr 0 keeps the random initial head
    train_std, other = standardize(x, x[:10])
    assert torch.allclose(train_std.mean(0), torch.zeros(16), atol=1e-5)
    assert torch.allclose(train_std.std(0, unbiased=False), torch.ones(16), atol=1e-3)
    assert torch.allclose(other, train_std[:10])


def test_bad_grid_is_rejected():
    with pytest.raises(ValueError, match="LEARNING_RATES"):
        train_linear_grid(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), 1, [], [0.0], 1, 2)
    with pytest.raises(ValueError, match="HOLDOUT_FRACTION"):
        stratified_holdout(np.zeros(10), 1.5, 0)


def test_stratified_holdout_takes_each_class_in_proportion_and_keeps_singletons():
    labels = np.array([0] * 100 + [1] * 20 + [2] * 3 + [3] * 1)
    kept, held = stratified_holdout(labels, 0.1, seed=0)
    assert np.bincount(labels[held], minlength=4).tolist() == [10, 2, 1, 0]  # round(0.1 n), >= 1 of 2+, none of 1
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(labels.size))
    again, other = stratified_holdout(labels, 0.1, seed=0)[1], stratified_holdout(labels, 0.1, seed=1)[1]
    assert np.array_equal(held, again) and not np.array_equal(held, other)
