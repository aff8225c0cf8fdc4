"""Data-loading throughput: images per second, decoded and augmented, with N DataLoader workers.

Sources: scikit-learn digits (upscaled to 32x32), Fashion-MNIST (Debian's
dataset-fashion-mnist IDX files) and a folder of synthetic JPEGs written to a
temporary directory (decoded from disk every time, like a real image folder).
Each item goes through the trainer's own path (``ViewsDataset`` + ``collate_views``)
with the ``two_view`` transform, so the numbers include decoding, augmentation of
two views, collation and worker transfer.

    .venv/bin/python benchmarks/data_loading_throughput.py [--workers 0 2] [--images 2048] [--size 32]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry import build_data_source, build_transform  # noqa: E402
from ssl_ext.data.views import ViewsDataset, collate_views  # noqa: E402


def source(name, **params):
    return build_data_source({"NAME": name, "PARAMS": params.pop("params", {})}, split="train",
                             data_path=params.get("data_path", ""), dataset_name="", skip_corrupt=False)


def write_jpeg_folder(root, count, size):
    synthetic = build_data_source({"NAME": "synthetic", "PARAMS": {"num_images": count, "image_size": size}}, split="train",
                                  data_path="", dataset_name="", skip_corrupt=False)
    for i in range(count):
        image, label = synthetic[i]
        folder = os.path.join(root, f"class_{label}")
        os.makedirs(folder, exist_ok=True)
        image.save(os.path.join(folder, f"{i}.jpg"), quality=90)


def throughput(dataset, workers, images, batch, size):
    transform = build_transform({"NAME": "two_view", "PARAMS": {"size": size}})
    views = ViewsDataset(dataset, transform, seed=0)
    subset = torch.utils.data.Subset(views, list(range(min(images, len(views)))))
    loader = DataLoader(subset, batch_size=batch, num_workers=workers, collate_fn=collate_views, shuffle=False)
    start = time.perf_counter()
    seen = sum(b["label"].numel() for b in loader)  # worker start-up is part of the cost a run pays
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--jpeg-size", type=int, default=64, help="side of the synthetic JPEGs on disk")
    parser.add_argument("--main-threads", type=int, default=1,
                        help="torch intra-op threads of the main process (workers always use 1); with 0 workers, "
                             "several threads on per-image tensors are much slower on a busy 2-core machine")
    args = parser.parse_args()
    torch.set_num_threads(args.main_threads)
    with tempfile.TemporaryDirectory() as jpeg_root:
        write_jpeg_folder(jpeg_root, args.images, args.jpeg_size)
        datasets = {"digits": lambda: source("digits")}
        if os.path.exists("/usr/share/datasets/fashion-mnist"):
            datasets["fashion_mnist"] = lambda: source("fashion_mnist")
        else:
            print("fashion_mnist: skipped (apt-get install dataset-fashion-mnist)")
        datasets[f"jpeg folder ({args.jpeg_size}px)"] = lambda: source("disk_folder", data_path=jpeg_root)
        print(f"two_view at {args.size}px, batch {args.batch}, {args.images} images per measurement, {os.cpu_count()} CPUs")
        print(f"{'source':<22}" + "".join(f"{f'{w} workers img/s':>18}" for w in args.workers))
        for name, make in datasets.items():
            dataset = make()
            rates = [throughput(dataset, w, args.images, args.batch, args.size) for w in args.workers]
            print(f"{name:<22}" + "".join(f"{r:>18.0f}" for r in rates))


if __name__ == "__main__":
    main()
