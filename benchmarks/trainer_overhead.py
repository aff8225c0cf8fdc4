"""Trainer overhead: median step time of ssl_ext's trainer vs a bare hand-written PyTorch loop.

Same model (identical initial weights), loss, optimizer and batch; the two loops take
steps in alternation so machine noise hits both alike. Target: ssl_ext within 5 %.

    .venv/bin/python benchmarks/trainer_overhead.py [--steps 60] [--trunk resnet]
"""
import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_ext.config import compose_config  # noqa: E402
from ssl_ext.engine.train_engine import build_task  # noqa: E402
from ssl_ext.data.views import collate_views  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose_config([
            "config=demo/tiny_synthetic", f"config.CHECKPOINT.DIR={run_dir}",
            f"config.DATA.TRAIN.BATCHSIZE_PER_REPLICA={args.batch}",
            f"config.DATA.TRAIN.SOURCE_PARAMS.image_size={args.size}", f"config.DATA.TRAIN.TRANSFORM.PARAMS.size={args.size}",
            "config.DATA.TRAIN.SOURCE_PARAMS.num_images=512",
            "config.MODEL.TRUNK.NAME=resnet", "~config.MODEL.TRUNK.PARAMS", "+config.MODEL.TRUNK.PARAMS={depth: 18, cifar_stem: true}",
            "config.MODEL.HEADS=[{NAME: mlp, PARAMS: {dims: [512, 128]}}]",
            "config.OPTIMIZER.NUM_EPOCHS=100", "config.HOOKS.LOG_FREQUENCY=10", "config.HOOKS.PROGRESS_BAR=off",
            "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false",
        ])
        task = build_task(cfg)
        batch = collate_views([task.train_loader.dataset[i] for i in range(args.batch)])

        bare_model = copy.deepcopy(task.student)
        bare_model.load_state_dict(task.student.state_dict())
        bare_loss = copy.deepcopy(task.loss)
        bare_opt = torch.optim.SGD(bare_model.parameters(), lr=task.peak_lr, momentum=0.9, weight_decay=1e-4)
        from ssl_ext.engine.output import ModelOutput

        def bare_step():
            out = bare_model(batch["views"], mask=True)
            loss = bare_loss(ModelOutput(student=out, student_views=[0, 1]), batch)["loss"]
            loss.backward()
            bare_opt.step()
            bare_opt.zero_grad(set_to_none=True)

        task.run_hooks("on_start")
        task.run_hooks("on_phase_start")
        ours, bare = [], []
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            task.step(batch)
            t1 = time.perf_counter()
            bare_step()
            t2 = time.perf_counter()
            if i >= args.warmup:
                ours.append(t1 - t0)
                bare.append(t2 - t1)
        ours_ms, bare_ms = statistics.median(ours) * 1e3, statistics.median(bare) * 1e3
        print(f"steps={args.steps} batch={args.batch}x2 views {args.size}px resnet18, threads={torch.get_num_threads()}")
        print(f"bare PyTorch loop : median {bare_ms:8.2f} ms/step")
        print(f"ssl_ext trainer   : median {ours_ms:8.2f} ms/step")
        print(f"overhead          : {100 * (ours_ms / bare_ms - 1):+.2f} %  (target: within 5 %)")


if __name__ == "__main__":
    main()
