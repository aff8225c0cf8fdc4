"""The batched augmentation path: operators equal torchvision's, determinism from (seed, epoch, index),
decoding and collation for the loader, every multi-view transform selectable from YAML, and training with it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

import registry
from ssl_ext.config import compose_config
from ssl_ext.data import batched
from ssl_ext.data.batched import ops
from ssl_ext.data.batched.augment import BatchedViews
from ssl_ext.data.image_loading import CorruptImageError, load_image, load_image_tensor
from ssl_ext.data.transforms.batched_decode import DecodeOnlyTransform
from ssl_ext.data.transforms.multi_crop import MultiCropTransform


def _photo(height=45, width=60, which=0) -> torch.Tensor:
    from sklearn.datasets import load_sample_images

    image = Image.fromarray(load_sample_images().images[which]).resize((width, height), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def _batch(images, indices):
    views = [DecodeOnlyTransform(max_size=512)(image) for image in images]
    return batched.collate_decoded([(v, 0, i) for v, i in zip(views, indices)])


# ----------------------------------------------------------------- operators
def test_crop_and_resize_equals_torchvision_resized_crop_pixel_for_pixel():
    photo = _photo()
    boxes = torch.tensor([[3, 5, 30, 41], [0, 0, 45, 60], [10, 20, 7, 9]])
    flips = torch.tensor([False, True, False])
    images = photo[None].contiguous(memory_format=torch.channels_last)
    ours = ops.resized_crops(images, torch.zeros(3, dtype=torch.long), boxes, (24, 24), flips)
    for k, (top, left, h, w) in enumerate(boxes.tolist()):
        expected = TF.resized_crop(photo, top, left, h, w, [24, 24], antialias=True)
        expected = TF.horizontal_flip(expected) if flips[k] else expected
        assert torch.equal((ours[k] * 255).round().to(torch.uint8), expected)


def test_roi_align_resampling_of_non_cpu_devices_is_close_to_torchvision():
    # The path CUDA takes (one roi_align call per batch), run on the CPU: same boxes and flips,
    # box-averaging instead of torchvision's triangle filter.
    photo = _photo(90, 120)
    boxes = torch.tensor([[10, 12, 70, 90], [0, 0, 90, 120], [40, 50, 20, 30]])
    flips = torch.tensor([True, False, False])
    images = photo[None].contiguous(memory_format=torch.channels_last)
    ours = ops.resized_crops(images, torch.zeros(3, dtype=torch.long), boxes, (32, 32), flips, method="roi_align")
    for k, (top, left, h, w) in enumerate(boxes.tolist()):
        expected = TF.resized_crop(photo, top, left, h, w, [32, 32], antialias=True).float() / 255
        expected = TF.horizontal_flip(expected) if flips[k] else expected
        assert (ours[k] - expected).abs().mean() < 3 / 255, k


def test_colour_operators_equal_torchvision_functional_ones():
    x = _photo(20, 24, which=1)[None].float().div(255).repeat(6, 1, 1, 1)
    factors = torch.tensor([[1.3, 0.6, 1.5, 0.1], [0.7, 1.4, 0.2, -0.3], [1.0, 1.0, 1.0, 0.45],
                            [0.2, 1.8, 0.9, -0.5], [1.6, 0.3, 1.7, 0.25], [0.9, 1.1, 0.4, -0.05]], dtype=torch.float64)
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1], [0, 2, 3, 1], [1, 0, 2, 3]])
    apply = torch.tensor([True, True, True, True, True, False])
    enabled = [True, True, False, True]  # saturation off, as ColorJitter(saturation=None)
    ours = ops.color_jitter(x.clone(), apply, factors, order, enabled)
    steps = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for v in range(6):
        expected = x[v]
        for k in order[v].tolist():
            if apply[v] and enabled[k]:
                expected = steps[k](expected, float(factors[v, k]))
        torch.testing.assert_close(ours[v], expected, atol=2e-5, rtol=0)
    select = torch.tensor([True, False, True, False, False, True])
    gray = ops.grayscale(x.clone(), select)
    for v in range(6):
        expected = TF.rgb_to_grayscale(x[v], num_output_channels=3) if select[v] else x[v]
        torch.testing.assert_close(gray[v], expected, atol=1e-6, rtol=0)
    sigma = torch.tensor([0.3, 1.0, 1.7, 2.0, 0.5, 1.2], dtype=torch.float64)
    blurred = ops.gaussian_blur(x.clone(), select, sigma, (7, 5))  # (kx, ky) as torchvision
    from kornia.filters import gaussian_blur2d

    for v in range(6):
        expected = TF.gaussian_blur(x[v], [7, 5], [float(sigma[v])] * 2) if select[v] else x[v]
        torch.testing.assert_close(blurred[v], expected, atol=1e-5, rtol=0)
        if select[v]:
            kornia_blur = gaussian_blur2d(x[v : v + 1], (5, 7), torch.full((1, 2), float(sigma[v])))[0]
            torch.testing.assert_close(blurred[v], kornia_blur, atol=1e-6, rtol=0)
    solar = ops.solarize(x.clone(), select, 0.5)
    for v in range(6):
        torch.testing.assert_close(solar[v], TF.solarize(x[v], 0.5) if select[v] else x[v])


# ----------------------------------------------------------------- determinism
def test_views_depend_on_seed_epoch_and_index_only():
    transform = MultiCropTransform(large_size=24, small_size=12, num_small_views=3)
    augment = BatchedViews.from_transform(transform)
    photos = [_photo(45, 60, 0), _photo(60, 50, 1), _photo(30, 70, 0)]
    first = _batch(photos, [7, 11, 4])
    views = augment(first["images"], first["image_sizes"], first["index"], seed=5, epoch=2)
    assert len(views) == 5 and views[0].shape == (3, 3, 24, 24) and views[2].shape == (3, 3, 12, 12)
    # Sample 11 alone, and sample 7 at another position next to a larger image (more padding): same views.
    alone = _batch([photos[1]], [11])
    views_alone = augment(alone["images"], alone["image_sizes"], alone["index"], seed=5, epoch=2)
    moved = _batch([_photo(90, 120, 1), photos[0]], [3, 7])
    views_moved = augment(moved["images"], moved["image_sizes"], moved["index"], seed=5, epoch=2)
    for v in range(5):
        assert torch.equal(views[v][1], views_alone[v][0])
        assert torch.equal(views[v][0], views_moved[v][1])
    # Another epoch, seed or index changes the views.
    for seed, epoch, index in ((5, 3, 7), (6, 2, 7), (5, 2, 8)):
        other = _batch([photos[0]], [index])
        changed = augment(other["images"], other["image_sizes"], other["index"], seed=seed, epoch=epoch)
        assert not torch.equal(changed[0][0], views[0][0])
    # The global RNG is neither used nor disturbed.
    state = torch.get_rng_state()
    again = augment(first["images"], first["image_sizes"], first["index"], seed=5, epoch=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(views, again))


# ----------------------------------------------------------------- loader side
def test_decode_only_bounds_the_size_and_converts_channels():
    transform = registry.build_transform({"NAME": "decode_only", "PARAMS": {"max_size": 40, "channels": 3}})
    [out] = transform(Image.fromarray(np.zeros((60, 100), dtype=np.uint8)))
    assert out.dtype == torch.uint8 and out.shape == (3, 24, 40)
    [small] = transform(torch.full((1, 8, 8), 200, dtype=torch.uint8))
    assert small.shape == (3, 8, 8) and int(small.min()) == 200
    with pytest.raises(ValueError, match="max_size"):
        DecodeOnlyTransform(max_size=0)


def test_load_image_tensor_decodes_jpeg_with_torchvision_and_names_corrupt_files(tmp_path):
    photo = _photo(37, 41).permute(1, 2, 0).numpy()
    Image.fromarray(photo).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(photo).save(tmp_path / "a.png")
    for name in ("a.jpg", "a.png"):
        tensor = load_image_tensor(str(tmp_path / name))
        reference = torch.from_numpy(np.array(load_image(str(tmp_path / name)))).permute(2, 0, 1)
        assert tensor.shape == (3, 37, 41) and torch.equal(tensor, reference)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match="cut.jpg"):
        load_image_tensor(str(tmp_path / "cut.jpg"))


def test_collate_pads_and_rejects_items_that_are_not_decoded_images():
    batch = _batch([_photo(45, 60), _photo(30, 70)], [1, 2])
    assert batch["images"].shape == (2, 3, 45, 70) and batch["image_sizes"].tolist() == [[45, 60], [30, 70]]
    assert int(batch["images"][1, :, 30:].abs().sum()) == 0
    with pytest.raises(TypeError, match="decode_only"):
        batched.collate_decoded([([torch.rand(3, 8, 8), torch.rand(3, 8, 8)], 0, 0)])


# ----------------------------------------------------------------- YAML
def _multi_view_transforms():
    registry.ensure_builtin_plugins()
    names = []
    for name in sorted(registry.TRANSFORMS.names()):
        transform = registry.build_transform({"NAME": name})
        if len(transform(_photo(40, 40))) > 1:
            names.append(name)
    return names


def test_the_builtin_multi_view_transforms_are_found():
    assert {"two_view", "multi_crop"} <= set(_multi_view_transforms())


@pytest.mark.parametrize("name", _multi_view_transforms())
def test_every_multi_view_transform_is_selectable_for_the_batched_path_from_yaml(name, tmp_path):
    cfg = compose_config([f"config.CHECKPOINT.DIR={tmp_path}", f"config.DATA.TRAIN.TRANSFORM.NAME={name}",
                          "config.DATA.TRAIN.AUGMENT_ON=device"])
    augment = batched.build_device_augment(cfg)
    assert augment is not None
    per_image = registry.build_transform({"NAME": name})(_photo(40, 40))
    batch = augment({**_batch([_photo(40, 40), _photo(30, 50)], [0, 1]), "epoch": 0})
    assert [tuple(v.shape[1:]) for v in batch["views"]] == [tuple(v.shape) for v in per_image]
    assert "images" not in batch and batch["index"].tolist() == [0, 1]


def _training_transform_specs():
    """Every complete ``DATA.TRAIN.TRANSFORM`` in the shipped configs (overlays without a NAME are left out)."""
    from omegaconf import OmegaConf

    from ssl_ext.config.paths import config_root

    specs = {}
    for path in sorted(Path(config_root()).rglob("*.yaml")):
        spec = OmegaConf.select(OmegaConf.load(path), "config.DATA.TRAIN.TRANSFORM")
        if spec is not None and "NAME" in spec:
            specs.setdefault(repr(OmegaConf.to_container(spec)), (str(path.relative_to(config_root())), spec))
    return sorted(specs.values(), key=lambda item: item[0])


@pytest.mark.parametrize("config_file,spec", _training_transform_specs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_shipped_training_transform_runs_on_the_batched_path(config_file, spec):
    from omegaconf import OmegaConf

    transform = registry.build_transform(OmegaConf.to_container(spec))
    per_image = transform(_photo(40, 50))
    views = BatchedViews.from_transform(transform)(**_batch_inputs([_photo(40, 50), _photo(30, 60, 1)]), seed=0, epoch=0)
    assert [tuple(v.shape[1:]) for v in views] == [tuple(v.shape) for v in per_image], config_file


def _batch_inputs(photos):
    batch = _batch(photos, list(range(len(photos))))
    return {"images": batch["images"], "image_sizes": batch["image_sizes"], "indices": batch["index"]}


def test_what_the_batched_path_cannot_reproduce_fails_naming_the_step_or_transform():
    from torchvision.transforms import v2

    from ssl_ext.data.batched.spec import ViewSpec, view_plan

    with pytest.raises(ValueError, match="RandomRotation.*no batched equivalent.*AUGMENT_ON=loader"):
        ViewSpec.from_pipeline([v2.RandomResizedCrop(8), v2.RandomRotation(10)])
    with pytest.raises(ValueError, match="RandomHorizontalFlip.*comes after 'grayscale'"):
        ViewSpec.from_pipeline([v2.RandomResizedCrop(8), v2.RandomGrayscale(), v2.RandomHorizontalFlip()])
    with pytest.raises(ValueError, match="antialiased bilinear"):
        ViewSpec.from_pipeline([v2.RandomResizedCrop(8, interpolation=v2.InterpolationMode.NEAREST)])
    with pytest.raises(ValueError, match="EvalResizeTransform has no batched view plan.*view_plan"):
        view_plan(registry.build_transform({"NAME": "eval_resize"}))


def test_augment_on_is_checked_and_loader_means_no_device_augmentation(tmp_path):
    base = ["config=demo/tiny_synthetic", f"config.CHECKPOINT.DIR={tmp_path}"]
    assert batched.build_device_augment(compose_config(base)) is None
    with pytest.raises(Exception, match="AUGMENT_ON"):
        batched.build_device_augment(compose_config(base + ["config.DATA.TRAIN.AUGMENT_ON=gpu"]))
    with pytest.raises(ValueError, match="DECODE_MAX_SIZE=12 is smaller than the largest view .*16 px"):
        batched.build_loader_transform(compose_config(base + ["config.DATA.TRAIN.AUGMENT_ON=device",
                                                              "config.DATA.TRAIN.DECODE_MAX_SIZE=12"]))


# ----------------------------------------------------------------- training
import tests.engine._plugins as _test_hooks  # noqa: E402,F401  (registers test_crash_at)

DEVICE_MSN = ["config=pretrain/msn/msn_cpu_tiny", "config.DATA.TRAIN.AUGMENT_ON=device", "config.DETERMINISTIC=true",
              "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=32", "config.OPTIMIZER.MAX_ITERATIONS=6",
              "config.DATA.NUM_DATALOADER_WORKERS=1", "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=3",
              "config.CHECKPOINT.KEEP_LAST=0", "config.HOOKS.LOG_FREQUENCY=1", "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false",
              "config.HOOKS.PLOT_CURVES=false"]


def _launch(run_dir, *overrides):
    from ssl_ext.launch.local import launch

    return launch(compose_config([*DEVICE_MSN, f"config.CHECKPOINT.DIR={run_dir}", *overrides]))


def _losses(run_dir):
    import json

    with open(run_dir / "metrics.jsonl") as f:
        return [(r["iteration"], r["loss"]) for r in map(json.loads, filter(str.strip, f)) if "loss" in r]


def test_msn_trains_with_views_made_on_the_device_and_resumes_bit_exactly(tmp_path):
    from ssl_ext.engine import checkpoint as ckpt
    from ssl_ext.utils.io import torch_load

    straight = _launch(tmp_path / "straight")
    assert straight["iteration"] == 6 and np.isfinite(straight["final_loss"])
    with pytest.raises(Exception, match="simulated crash at iteration 4"):
        _launch(tmp_path / "crashed", "config.HOOKS.EXTRA=[{NAME: test_crash_at, PARAMS: {iteration: 4}}]")
    _launch(tmp_path / "crashed")
    assert _losses(tmp_path / "crashed") == _losses(tmp_path / "straight")
    weights = [torch_load(ckpt.list_checkpoints(str(tmp_path / name))[0][1])["model"] for name in ("straight", "crashed")]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def test_the_training_loader_only_decodes_when_augmentation_runs_on_the_device(tmp_path):
    from ssl_ext.data.build import build_dataset, build_loader

    for i in range(4):
        folder = tmp_path / "images" / f"class_{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo(45 + i, 60, i % 2).permute(1, 2, 0).numpy()).save(folder / f"{i}.jpg")
    cfg = compose_config([f"config.CHECKPOINT.DIR={tmp_path / 'run'}", "config.DATA.TRAIN.AUGMENT_ON=device",
                          "config.DATA.TRAIN.DATA_SOURCES=[disk_folder]", f"config.DATA.TRAIN.DATA_PATHS=[{tmp_path / 'images'}]",
                          "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=4", "config.DATA.TRAIN.DECODE_MAX_SIZE=50"])
    dataset = build_dataset(cfg, "TRAIN")
    assert dataset.base.decode_to_tensor and isinstance(dataset.transform, DecodeOnlyTransform)
    loader, _ = build_loader(cfg, dataset, "TRAIN", rank=0, world_size=1, seed=0)
    batch = next(iter(loader))
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape[:2] == (4, 3)
    assert sorted(batch["image_sizes"].tolist()) == sorted([[round(50 * (45 + i) / 60), 50] for i in range(4)])
    views = batched.build_device_augment(cfg)({**batch, "epoch": 0})["views"]
    per_image = registry.build_transform({"NAME": "two_view"})(_photo())
    assert [tuple(v.shape) for v in views] == [(4, *v.shape) for v in per_image]
