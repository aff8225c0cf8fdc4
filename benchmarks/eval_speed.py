#!/usr/bin/env python
"""Evaluation speed: cached-feature linear eval vs VISSL-protocol linear eval, and faiss vs torch kNN.

    python benchmarks/eval_speed.py [--epochs 10] [--train-limit 0] [--weights ckpt] [--skip-linear] [--skip-knn]

1. Linear eval on Fashion-MNIST (configs_yaml/benchmark/tiny/fashion_mnist_*), the same
   small_cnn weights, epochs, batch size, learning rate and weight decay in both modes:
   * fast: extract the features once, then train on the cached features (one head,
     and separately the whole default lr x wd grid);
   * protocol, without augmentation: the same model on the same images, so the
     accuracies should agree;
   * protocol with the benchmark's augmentation (VISSL's recipe), for reference.
   Reported: wall time and top-1 of each; the speed-up of fast (extraction included).
2. kNN with 60,000 x 10,000 features (128-d, 10 classes, k in {10, 20, 100, 200}):
   faiss (IndexFlatIP, exact) vs a brute-force torch search (chunked matrix product +
   topk), checking both give the same predictions.

Timings are wall-clock on this machine; run it on an idle machine.
"""
import argparse
import copy
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def linear_comparison(args, workdir):
    from omegaconf import OmegaConf

    import registry
    from ssl_ext.benchmarks.extraction import extract_features
    from ssl_ext.config import compose_config

    overrides = [
        "config.MACHINE.DEVICE=cpu", f"config.OPTIMIZER.NUM_EPOCHS={args.epochs}",
        "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=256", "config.OPTIMIZER.BASE_LR=0.1", "config.OPTIMIZER.BASE_LR_BATCH_SIZE=256",
        "config.OPTIMIZER.WEIGHT_DECAY=1.0e-4", f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={args.weights}",
        "config.DATA.NUM_DATALOADER_WORKERS=0",
    ]
    if args.train_limit:
        overrides += ["config.DATA.TRAIN.LONG_TAIL.ENABLED=true", "config.DATA.TRAIN.LONG_TAIL.IMBALANCE_RATIO=1.0"]
    base = compose_config(["config=benchmark/tiny/fashion_mnist_linear_fast", *overrides])
    if args.train_limit:
        # A balanced subset of train: LONG_TAIL with ratio 1 keeps the same number of images per class.
        import ssl_ext.data.long_tail as long_tail

        original = long_tail.make_long_tailed
        long_tail.make_long_tailed = lambda dataset, **kw: original(dataset, **{**kw, "head_size": args.train_limit // 10})

    def run(name, **changes):
        cfg = copy.deepcopy(base)
        cfg.config.CHECKPOINT.DIR = os.path.join(workdir, name)
        for key, value in changes.items():
            OmegaConf.update(cfg, "config." + key, value, merge=False)
        return cfg

    rows = []
    fast_cfg = run("fast", **{"BENCHMARK.LINEAR.FAST.LEARNING_RATES": [0.1], "BENCHMARK.LINEAR.FAST.WEIGHT_DECAYS": [1.0e-4]})
    _, extract_s = timed(lambda: extract_features(fast_cfg))
    engine = registry.ENGINES.get("linear_eval")
    fast, fast_s = timed(lambda: engine(fast_cfg))
    rows.append(("fast, 1 head (cached features)", fast["rows"][0]["top1"], fast_s, extract_s + fast_s))
    grid_cfg = run("fast")
    grid_cfg.config.BENCHMARK.FEATURES.DIR = os.path.join(workdir, "fast", "features")
    grid, grid_s = timed(lambda: engine(grid_cfg))
    heads = len(grid_cfg.config.BENCHMARK.LINEAR.FAST.LEARNING_RATES) * len(grid_cfg.config.BENCHMARK.LINEAR.FAST.WEIGHT_DECAYS)
    rows.append((f"fast, {heads}-head grid, best on val", grid["rows"][0]["top1"], grid_s, extract_s + grid_s))
    plain_cfg = run("protocol", **{"BENCHMARK.LINEAR.MODE": "protocol", "BENCHMARK.LINEAR.PROTOCOL.EVAL_FREQUENCY": args.epochs,
                                   "DATA.TRAIN.TRANSFORM": OmegaConf.to_container(base.config.DATA.VAL.TRANSFORM)})
    plain, plain_s = timed(lambda: engine(plain_cfg))
    rows.append(("protocol, no augmentation (same features)", plain["rows"][0]["top1"], plain_s, plain_s))
    if not args.skip_augmented:
        aug_cfg = run("protocol_aug", **{"BENCHMARK.LINEAR.MODE": "protocol", "BENCHMARK.LINEAR.PROTOCOL.EVAL_FREQUENCY": args.epochs})
        aug, aug_s = timed(lambda: engine(aug_cfg))
        rows.append(("protocol, crop + flip augmentation", aug["rows"][0]["top1"], aug_s, aug_s))
    print(f"\nLinear eval on Fashion-MNIST, {args.epochs} epochs, batch 256, lr 0.1, wd 1e-4 "
          f"({'all 60,000' if not args.train_limit else args.train_limit} train / 10,000 test images):")
    print("| mode | top-1 % | training s | total s (with extraction) |\n|---|---|---|---|")
    for name, top1, train_s, total_s in rows:
        print(f"| {name} | {top1:.2f} | {train_s:.1f} | {total_s:.1f} |")
    print(f"speed-up of fast (1 head, extraction included) over the protocol without augmentation: {rows[2][3] / rows[0][3]:.1f}x; "
          f"top-1 difference {abs(rows[0][1] - rows[2][1]):.2f} points")
    return rows


def knn_comparison(args):
    import torch
    import torch.nn.functional as F

    from ssl_ext.benchmarks.knn import knn_scores, weighted_votes

    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(10, 128, generator=generator)
    train_labels = torch.randint(0, 10, (60000,), generator=generator)
    test_labels = torch.randint(0, 10, (10000,), generator=generator)
    train = centers[train_labels] + 4.0 * torch.randn(60000, 128, generator=generator)
    test = centers[test_labels] + 4.0 * torch.randn(10000, 128, generator=generator)
    ks = [10, 20, 100, 200]

    def brute_force():
        t, q = F.normalize(train, dim=1), F.normalize(test, dim=1)
        sims, ids = [], []
        for start in range(0, q.shape[0], 1024):
            s, i = (q[start : start + 1024] @ t.T).topk(max(ks), dim=1)
            sims.append(s)
            ids.append(i)
        sims, ids = torch.cat(sims), torch.cat(ids)
        return {k: weighted_votes(sims, train_labels[ids], k, 0.07, 10) for k in ks}

    faiss_scores, faiss_s = timed(lambda: knn_scores(train, train_labels, test, ks, 0.07, 10))
    torch_scores, torch_s = timed(brute_force)
    agree = {k: float((faiss_scores[k].argmax(1) == torch_scores[k].argmax(1)).float().mean()) for k in ks}
    top1 = {k: float((faiss_scores[k].argmax(1) == test_labels).float().mean()) * 100 for k in ks}
    print(f"\nkNN, 60,000 x 10,000 features (128-d), k in {ks}, {torch.get_num_threads()} threads:")
    print(f"| search | seconds |\n|---|---|\n| faiss IndexFlatIP (CPU) | {faiss_s:.2f} |\n| torch brute force | {torch_s:.2f} |")
    print(f"predictions identical: {agree}; top-1 %: { {k: round(v, 2) for k, v in top1.items()} }")
    return {"faiss_s": faiss_s, "torch_s": torch_s, "agreement": agree}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-limit", type=int, default=0, help="balanced train subset size (0 = all 60,000)")
    parser.add_argument("--weights", default="", help="small_cnn checkpoint to evaluate (default: random init)")
    parser.add_argument("--skip-linear", action="store_true")
    parser.add_argument("--skip-augmented", action="store_true")
    parser.add_argument("--skip-knn", action="store_true")
    args = parser.parse_args()
    report = {}
    with tempfile.TemporaryDirectory(prefix="ssl_ext_eval_speed_") as workdir:
        if not args.skip_linear:
            report["linear"] = linear_comparison(args, workdir)
        if not args.skip_knn:
            report["knn"] = knn_comparison(args)
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
