"""Augmentation throughput: the per-image path vs the batched path (config.DATA.TRAIN.AUGMENT_ON=device).

On one folder of 500x375 JPEGs cut from scikit-learn's two sample photographs
(real images, no download), for ``two_view`` at 224 px and MSN's ``multi_crop``
(2 x 224 px + 10 x 96 px), side by side in one process on one thread:

1. per-image: the trainer's loader path today (``disk_folder`` source, PIL
   decoding, ``ViewsDataset`` + the registered transform, ``collate_views``);
2. batched on CPU: decode only (``decode_only``, JPEGs through
   ``torchvision.io.decode_jpeg``) + ``collate_decoded`` + the device augmentation
   of ``ssl_ext.data.batched`` running on the CPU;
3. decode only: what a loader worker still does when augmentation runs on the
   device (step 2 without the augmentation);
4. with a GPU, the batched augmentation alone on it (``--gpu``; decoded batches
   prepared beforehand, synchronised timing).

Methods alternate over ``--rounds`` rounds; the median images/s per core is
printed, timed in CPU seconds of this one-thread process (``time.process_time``),
so other work on a shared machine slows both paths alike instead of adding to
the figures; the GPU row is wall-clock. The last line is ``speedup: <batched CPU / per-image, MSN multi_crop>``.

    .venv/bin/python benchmarks/augmentation_throughput.py [--images 96] [--batch 32] [--rounds 3]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry import build_data_source, build_transform  # noqa: E402
from ssl_ext.data import batched  # noqa: E402
from ssl_ext.data.batched.augment import BatchedViews  # noqa: E402
from ssl_ext.data.transforms.batched_decode import DecodeOnlyTransform  # noqa: E402
from ssl_ext.data.views import ViewsDataset, collate_views  # noqa: E402

TRANSFORMS = {
    "two_view 224px": {"NAME": "two_view", "PARAMS": {"size": 224}},
    "MSN multi_crop": {"NAME": "multi_crop", "PARAMS": {}},  # 2 x 224 + 10 x 96, MSN's settings
}


def write_jpeg_folder(root: str, count: int) -> None:
    """``count`` 500x375 JPEGs: random crops (scale, position, mirror) of the two sample photographs."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "photos"), exist_ok=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        w = int(min(photo.width, photo.height / 0.75) * rng.uniform(0.6, 1.0))
        h = int(w * 0.75)
        left, top = int(rng.integers(0, photo.width - w + 1)), int(rng.integers(0, photo.height - h + 1))
        image = photo.crop((left, top, left + w, top + h)).resize((500, 375), Image.BICUBIC)
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        image.save(os.path.join(root, "photos", f"{i:05d}.jpg"), quality=90)


def folder_source(root: str):
    return build_data_source({"NAME": "disk_folder", "PARAMS": {}}, split="train", data_path=root,
                             dataset_name="", skip_corrupt=False)


def batches(n: int, size: int):
    return [list(range(start, min(n, start + size))) for start in range(0, n, size)]


def per_image(root: str, spec, n: int, batch: int) -> float:
    dataset = ViewsDataset(folder_source(root), build_transform(spec), seed=0)
    start = time.process_time()
    for indices in batches(n, batch):
        collate_views([dataset[i] for i in indices])
    return n / (time.process_time() - start)


def decoded_dataset(root: str, spec):
    channels = int(getattr(build_transform(spec), "channels", 3))
    return ViewsDataset(batched.decode_to_tensors(folder_source(root)), DecodeOnlyTransform(512, channels), seed=0)


def decode_only(root: str, spec, n: int, batch: int) -> float:
    dataset = decoded_dataset(root, spec)
    start = time.process_time()
    for indices in batches(n, batch):
        batched.collate_decoded([dataset[i] for i in indices])
    return n / (time.process_time() - start)


def batched_cpu(root: str, spec, n: int, batch: int) -> float:
    dataset = decoded_dataset(root, spec)
    augment = batched.DeviceAugment(BatchedViews.from_transform(build_transform(spec)), seed=0)
    start = time.process_time()
    for indices in batches(n, batch):
        augment({**batched.collate_decoded([dataset[i] for i in indices]), "epoch": 0})
    return n / (time.process_time() - start)


def batched_gpu(root: str, spec, n: int, batch: int) -> float:
    dataset = decoded_dataset(root, spec)
    ready = [{**batched.collate_decoded([dataset[i] for i in indices]), "epoch": 0} for indices in batches(n, batch)]
    ready = [{k: (v.cuda() if torch.is_tensor(v) else v) for k, v in b.items()} for b in ready]
    augment = batched.DeviceAugment(BatchedViews.from_transform(build_transform(spec)), seed=0)
    augment(ready[0])  # warm-up (kernels, cuDNN)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for b in ready:
        augment(b)
    torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96, help="images per measurement (JPEGs written)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default="", help="existing ImageFolder of JPEGs instead of the generated one")
    parser.add_argument("--gpu", action="store_true", help="also time the batched augmentation on CUDA")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_dir or tmp
        if not args.data_dir:
            write_jpeg_folder(root, args.images)
        methods = {"per-image (loader)": per_image, "batched CPU (decode + augment)": batched_cpu,
                   "decode only": decode_only}
        if args.gpu and torch.cuda.is_available():
            methods["batched GPU (augment only)"] = batched_gpu
        results = {}
        for name, spec in TRANSFORMS.items():
            for fn in methods.values():  # warm-up: imports, allocator, file cache
                fn(root, spec, min(args.batch, args.images), args.batch)
            seen = {method: [] for method in methods}
            for _ in range(args.rounds):
                for method, fn in methods.items():
                    seen[method].append(fn(root, spec, args.images, args.batch))
            results[name] = {method: statistics.median(v) for method, v in seen.items()}
            base = results[name]["per-image (loader)"]
            print(f"{name} ({args.images} images of 500x375, batch {args.batch}, 1 thread, median of {args.rounds}):")
            for method, rate in results[name].items():
                print(f"  {method:34s} {rate:8.1f} images/s per core  ({rate / base:5.2f}x per-image)")
    msn = results["MSN multi_crop"]
    print(f"speedup: {msn['batched CPU (decode + augment)'] / msn['per-image (loader)']:.2f}")


if __name__ == "__main__":
    main()
