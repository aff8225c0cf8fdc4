#!/usr/bin/env python
"""Loss speed: forward+backward CPU time of ssl_ext's losses next to lightly's, in one run.

    .venv/bin/python benchmarks/loss_speed.py [--repeats 15] [--warmup 3] [--threads N] [--device cpu|cuda]
        [--resnet-resolution 32] [--resnet-repeats 5] [--cases msn pmsn vicreg simclr singular_value]

lightly (https://github.com/lightly-ai/lightly) is a benchmark-only dependency:
``pip install lightly`` (``import lightly.loss`` needs nothing beyond torch/torchvision,
so ``pip install --no-deps lightly`` is enough in this venv).

Cases (sizes from issue 4), each timed as one forward and one backward pass:

======================  =====================================  ======================================
ssl_ext                 size                                   compared with
======================  =====================================  ======================================
msn_loss                anchors 11 views x 1024 x 256,         lightly.loss.MSNLoss
                        target 1024 x 256, K = 1024
pmsn_loss (power law)   the same                               lightly.loss.PMSNLoss
vicreg_loss             2 views x 1024 x 2048                  lightly.loss.VICRegLoss
simclr_loss             2 views x 1024 x 128                   lightly.loss.NTXentLoss
swav_loss               2 x 256 + 6 x 256 crops, D = 128,      lightly.loss.SwaVLoss on the same
                        K = 3000 prototypes                    cosine scores (lightly's prototype
                                                               layer's work is timed on its side)
dino_loss               12 student x 32 x 65536 (2 global to   lightly.loss.DINOLoss
                        the teacher)
singular_value_loss     1024 x 256                             one torchvision ResNet-18 training
                                                               step (forward+backward+SGD) at batch
                                                               256 (lightly has no counterpart)
======================  =====================================  ======================================

Targets: no ssl_ext loss slower than its lightly counterpart (ratio ours/lightly <= 1);
the singular-value loss at most 10 % of the ResNet-18 step.

Fairness: both sides get the same input tensors (the same leaf tensors, so both backward
passes produce the same gradients), the same hyper-parameters (temperatures 0.1 and
0.25, 3 Sinkhorn iterations, weights 25/25/1, eps 1e-4, tau 0.25) and the same
thread count; each side is warmed up, then the two alternate (ABBA order, so neither
always runs first) and the medians are reported, which keeps the comparison meaningful
on a shared, noisy machine. Before timing, the values and input gradients of both are
compared ("check" column). Known differences in what the two compute:

* MSN: identical (me-max, uniform-marginal Sinkhorn, sharpening); the anchors arrive
  as 11 per-view tensors on both sides: ssl_ext concatenates them inside the loss, the
  lightly side concatenates them before the call as lightly's MSN example does.
  ssl_ext's prototypes are a parameter of the loss; lightly takes them as an argument
  (the same tensor is passed, and both compute its gradient).
* PMSN: the same cross-entropy; the regularizer differs by definition, ssl_ext uses
  KL(p̄ ‖ π) as in the paper, lightly's ``F.kl_div(p̄.log(), π)`` is KL(π ‖ p̄). The cost
  is the same kind of work (one K-vector), so the timing is comparable; the values differ.
* VICReg, SimCLR (NT-Xent, temperature 0.1, no memory bank): identical.
* SwAV: identical (codes of the two large crops over the batch, temperature 0.1, epsilon
  0.05, 3 iterations); ssl_ext also computes p̄ for the prior monitor.
* DINO: identical (teacher temperature 1/16, exact in lightly's float32 tensor; both update
  their center every call); ssl_ext also computes p̄ for the prior monitor.

``--cases mim`` (not a lightly comparison) times one training step (student forward with
masking, EMA-teacher forward where the method has one, loss, backward) of MAE, data2vec and
MSN on the same ViT (192-d, 6 blocks, 64 px images in 8 px patches, batch 32): MAE's
encoder sees 25 % of the patches, MSN's anchor 85 % plus a teacher pass, data2vec's
student all of them (mask tokens) plus a teacher pass.

Timings are wall-clock medians on whatever else the machine is doing; the load
average is printed before and after. The ResNet-18 reference runs at
``--resnet-resolution`` (default 32x32: at 224x224 one step takes minutes on a 2-core
CPU); the printed row names the resolution.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry import build_loss  # noqa: E402
from ssl_ext.engine.output import ModelOutput  # noqa: E402

MSN_VIEWS, MSN_BATCH, MSN_DIM, MSN_PROTOTYPES = 11, 1024, 256, 1024
SHARED_MSN_SETTINGS = {"temperature": 0.1, "sinkhorn_iterations": 3, "regularization_weight": 1.0}
SHARPEN_TEMPERATURE = 0.25
POWER_LAW_TAU = 0.25
SIMCLR_TEMPERATURE = 0.1
SINGULAR_VALUE_BUDGET = 0.10
DeviceLike = Union[str, torch.device]


@dataclass
class Case:
    """Two callables that each run one forward+backward on the same leaves and return the loss."""

    name: str
    size: str
    compared_with: str
    ours: Callable[[], torch.Tensor]
    theirs: Callable[[], torch.Tensor]
    leaves: Sequence[torch.Tensor]
    max_ratio: float = 1.0
    repeats: Optional[int] = None
    values_should_match: bool = True


def import_lightly_loss():
    try:
        import lightly.loss as lightly_loss
    except ImportError:
        print(
            "benchmarks/loss_speed.py compares ssl_ext's losses with the lightly library, which is not installed.\n"
            "Install it (a benchmark-only dependency) with:  pip install lightly\n"
            "(in this venv `pip install --no-deps lightly` is enough: `import lightly.loss` needs only torch).",
            file=sys.stderr,
        )
        sys.exit(2)
    return lightly_loss


def leaf(*shape: int, generator: torch.Generator, requires_grad: bool = True, device: DeviceLike = "cpu") -> torch.Tensor:
    """Drawn on the CPU generator (the same values on every device), then moved: still a leaf."""
    return torch.randn(*shape, generator=generator).to(device).requires_grad_(requires_grad)


def backward_and_return(loss: torch.Tensor) -> torch.Tensor:
    loss.backward()
    return loss.detach()


# ------------------------------------------------------------------------------ cases
def prototype_cases(lightly_loss, generator: torch.Generator, device: DeviceLike = "cpu") -> List[Case]:
    anchor_views = [leaf(MSN_BATCH, MSN_DIM, generator=generator, device=device) for _ in range(MSN_VIEWS)]
    target = leaf(MSN_BATCH, MSN_DIM, generator=generator, requires_grad=False, device=device)
    output = ModelOutput(
        student=anchor_views, teacher=[target], student_views=list(range(1, MSN_VIEWS + 1)), teacher_views=[0]
    )
    common = {"num_prototypes": MSN_PROTOTYPES, "embed_dim": MSN_DIM, "sharpen_temperature": SHARPEN_TEMPERATURE,
              **SHARED_MSN_SETTINGS}
    msn = build_loss({"NAME": "msn_loss", "PARAMS": common}).to(device)
    pmsn = build_loss({"NAME": "pmsn_loss", "PARAMS": {
        **common, "prior": {"NAME": "power_law", "PARAMS": {"tau": POWER_LAW_TAU}}}}).to(device)
    pmsn.prototypes = msn.prototypes  # one prototype tensor for all four losses
    prototypes = msn.prototypes
    lightly_msn = lightly_loss.MSNLoss(**SHARED_MSN_SETTINGS)
    lightly_pmsn = lightly_loss.PMSNLoss(**SHARED_MSN_SETTINGS, power_law_exponent=POWER_LAW_TAU)

    def lightly_step(loss_module):
        anchors = torch.cat(anchor_views)
        return backward_and_return(loss_module(anchors, target, prototypes, target_sharpen_temperature=SHARPEN_TEMPERATURE))

    size = f"{MSN_VIEWS}x{MSN_BATCH}x{MSN_DIM}, K={MSN_PROTOTYPES}"
    leaves = [*anchor_views, prototypes]
    return [
        Case("msn_loss", size, "lightly MSNLoss", lambda: backward_and_return(msn(output, {})["loss"]),
             lambda: lightly_step(lightly_msn), leaves),
        Case("pmsn_loss (power law)", size, "lightly PMSNLoss", lambda: backward_and_return(pmsn(output, {})["loss"]),
             lambda: lightly_step(lightly_pmsn), leaves, values_should_match=False),
    ]


def vicreg_case(lightly_loss, generator: torch.Generator, device: DeviceLike = "cpu") -> Case:
    views = [leaf(1024, 2048, generator=generator, device=device) for _ in range(2)]
    ours = build_loss({"NAME": "vicreg_loss", "PARAMS": {
        "invariance_weight": 25.0, "variance_weight": 25.0, "covariance_weight": 1.0, "eps": 1e-4}})
    theirs = lightly_loss.VICRegLoss(lambda_param=25.0, mu_param=25.0, nu_param=1.0, eps=1e-4)
    output = ModelOutput(student=views, student_views=[0, 1])
    return Case("vicreg_loss", "2x1024x2048", "lightly VICRegLoss", lambda: backward_and_return(ours(output, {})["loss"]),
                lambda: backward_and_return(theirs(*views)), views)


def simclr_case(lightly_loss, generator: torch.Generator, device: DeviceLike = "cpu") -> Case:
    views = [leaf(1024, 128, generator=generator, device=device) for _ in range(2)]
    ours = build_loss({"NAME": "simclr_loss", "PARAMS": {"temperature": SIMCLR_TEMPERATURE}})
    theirs = lightly_loss.NTXentLoss(temperature=SIMCLR_TEMPERATURE, memory_bank_size=0)
    output = ModelOutput(student=views, student_views=[0, 1])
    return Case("simclr_loss", "2x1024x128", "lightly NTXentLoss", lambda: backward_and_return(ours(output, {})["loss"]),
                lambda: backward_and_return(theirs(*views)), views)


def swav_case(lightly_loss, generator: torch.Generator, device: DeviceLike = "cpu") -> Case:
    import torch.nn.functional as F

    views = [leaf(256, 128, generator=generator, device=device) for _ in range(8)]
    ours = build_loss({"NAME": "swav_loss", "PARAMS": {"num_prototypes": 3000, "embed_dim": 128, "temperature": 0.1,
                                                       "epsilon": 0.05, "sinkhorn_iterations": 3}}).to(device)
    theirs = lightly_loss.SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)
    output = ModelOutput(student=views, student_views=list(range(8)))

    def lightly_step():
        weights = F.normalize(ours.prototypes, dim=1)
        scores = [F.normalize(v, dim=1) @ weights.T for v in views]
        return backward_and_return(theirs(scores[:2], scores[2:]))

    return Case("swav_loss", "8x256x128, K=3000", "lightly SwaVLoss", lambda: backward_and_return(ours(output, {})["loss"]),
                lightly_step, [*views, ours.prototypes])


def dino_case(lightly_loss, generator: torch.Generator, device: DeviceLike = "cpu") -> Case:
    students = [leaf(32, 65536, generator=generator, device=device) for _ in range(12)]
    teachers = [leaf(32, 65536, generator=generator, requires_grad=False, device=device) for _ in range(2)]
    ours = build_loss({"NAME": "dino_loss", "PARAMS": {"out_dim": 65536, "teacher_temperature": 0.0625,
                                                       "student_temperature": 0.1, "center_momentum": 0.9}}).to(device)
    theirs = lightly_loss.DINOLoss(output_dim=65536, teacher_temp=0.0625, warmup_teacher_temp=0.0625,
                                   student_temp=0.1, center_momentum=0.9).to(device)
    output = ModelOutput(student=students, teacher=teachers, student_views=list(range(12)), teacher_views=[0, 1])
    return Case("dino_loss", "12x32x65536", "lightly DINOLoss", lambda: backward_and_return(ours(output, {})["loss"]),
                lambda: backward_and_return(theirs(teachers, students)), students)


def masked_image_modelling_steps(generator: torch.Generator, repeats: int, warmup: int, device: DeviceLike = "cpu"):
    """Median ms of one training step of MAE, data2vec and MSN on the same ViT (see the module docstring)."""
    from registry import build_head, build_trunk
    from ssl_ext.engine.model import SSLModel, make_teacher

    vit = {"preset": "custom", "img_size": 64, "patch_size": 8, "embed_dim": 192, "depth": 6, "num_heads": 3}
    images = torch.randn(32, 3, 64, 64, generator=generator).to(device)

    def model(trunk_params, heads=(), student_heads=()):
        torch.manual_seed(0)
        trunk = build_trunk({"NAME": "vit", "PARAMS": {**vit, **trunk_params}})
        built, width = [], trunk.out_dim
        for spec in heads:
            built.append(build_head(spec, in_dim=width))
            width = built[-1].out_dim
        extra = [build_head(spec, in_dim=width) for spec in student_heads]
        return SSLModel(trunk, built, extra).to(device)

    mae = model({"patch_drop": 0.75, "output": "tokens"}, [{"NAME": "mae_decoder", "PARAMS": {
        "img_size": 64, "patch_size": 8, "in_channels": 3, "decoder_dim": 128, "depth": 2, "num_heads": 4}}])
    mae_loss = build_loss({"NAME": "mae_loss", "PARAMS": {"patch_size": 8}}).to(device)
    d2v = model({"patch_drop": 0.6, "mask_style": "token", "output": "tokens", "teacher_target_blocks": 3}, (),
                [{"NAME": "mlp", "PARAMS": {"dims": [192], "use_bn": False}}])
    d2v_teacher, d2v_loss = make_teacher(d2v), build_loss({"NAME": "data2vec_loss"}).to(device)
    msn = model({"patch_drop": 0.15}, [{"NAME": "msn_projector", "PARAMS": {"hidden_dim": 512, "out_dim": 128}}])
    msn_teacher = make_teacher(msn)
    msn_loss = build_loss({"NAME": "msn_loss", "PARAMS": {"num_prototypes": 1024, "embed_dim": 128}}).to(device)

    def step(student, loss, teacher=None):
        student.zero_grad(set_to_none=True)
        out = student([images], mask=True)
        target = None
        if teacher is not None:
            with torch.no_grad():
                target = [t.detach() for t in teacher([images], mask=False, use_student_heads=False)]
        terms = loss(ModelOutput(student=out, teacher=target, student_views=[0], teacher_views=[0]), {"views": [images]})
        terms["loss"].backward()
        synchronize([images])

    steps = {"mae_loss": lambda: step(mae, mae_loss), "data2vec_loss": lambda: step(d2v, d2v_loss, d2v_teacher),
             "msn_loss (anchor + target)": lambda: step(msn, msn_loss, msn_teacher)}
    times = {name: [] for name in steps}
    for _ in range(warmup):
        for run in steps.values():
            run()
    for i in range(repeats):
        order = list(steps.items()) if i % 2 == 0 else list(reversed(steps.items()))
        for name, run in order:
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def singular_value_case(generator: torch.Generator, resolution: int, repeats: int, device: DeviceLike = "cpu") -> Case:
    import torchvision

    embeddings = leaf(1024, 256, generator=generator, device=device)
    ours = build_loss({"NAME": "singular_value_loss", "PARAMS": {}})
    output = ModelOutput(student=[embeddings], student_views=[0])
    resnet = torchvision.models.resnet18(num_classes=1000).to(device)
    optimizer = torch.optim.SGD(resnet.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(256, 3, resolution, resolution, generator=generator).to(device)
    labels = torch.randint(0, 1000, (256,), generator=generator).to(device)

    def resnet_step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(resnet(images), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return Case(
        "singular_value_loss", "1024x256", f"ResNet-18 train step, batch 256, {resolution}x{resolution}",
        lambda: backward_and_return(ours(output, {})["loss"]), resnet_step, [embeddings],
        max_ratio=SINGULAR_VALUE_BUDGET, repeats=repeats, values_should_match=False,
    )


# ----------------------------------------------------------------------------- timing
def clear_grads(leaves: Sequence[torch.Tensor]) -> None:
    for tensor in leaves:
        tensor.grad = None


def synchronize(leaves: Sequence[torch.Tensor]) -> None:
    """Wait for queued GPU work, so a wall-clock interval covers the kernels it launched."""
    if leaves and leaves[0].is_cuda:
        torch.cuda.synchronize(leaves[0].device)


def timed_ms(step: Callable[[], torch.Tensor], leaves: Sequence[torch.Tensor]) -> float:
    clear_grads(leaves)
    synchronize(leaves)
    started = time.perf_counter()
    step()
    synchronize(leaves)
    return (time.perf_counter() - started) * 1000


def agreement(case: Case) -> str:
    """Do both sides give the same loss and the same input gradients?"""
    if case.compared_with.startswith("ResNet"):
        return "-"
    clear_grads(case.leaves)
    ours = case.ours()
    our_grads = [t.grad.clone() for t in case.leaves]
    clear_grads(case.leaves)
    theirs = case.theirs()
    their_grads = [t.grad.clone() for t in case.leaves]
    same_value = torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    scale = max(g.abs().max().item() for g in our_grads)
    grad_diff = max((a - b).abs().max().item() for a, b in zip(our_grads, their_grads)) / max(scale, 1e-30)
    verdict = "same" if same_value and grad_diff < 1e-3 else "differs"
    expected = "" if case.values_should_match or verdict == "same" else " (by definition)"
    return f"{verdict}{expected}: loss {ours.item():.6g} vs {theirs.item():.6g}, grad rel diff {grad_diff:.1e}"


def time_case(case: Case, repeats: int, warmup: int) -> Dict[str, float]:
    for _ in range(warmup):
        timed_ms(case.ours, case.leaves)
        timed_ms(case.theirs, case.leaves)
    ours, theirs = [], []
    for i in range(case.repeats or repeats):
        # ABBA: alternate which side goes first, so drift and cache effects hit both alike.
        if i % 2 == 0:
            ours.append(timed_ms(case.ours, case.leaves))
            theirs.append(timed_ms(case.theirs, case.leaves))
        else:
            theirs.append(timed_ms(case.theirs, case.leaves))
            ours.append(timed_ms(case.ours, case.leaves))
    clear_grads(case.leaves)
    return {"ours": statistics.median(ours), "theirs": statistics.median(theirs),
            "ours_min": min(ours), "theirs_min": min(theirs)}


def print_table(rows: List[Dict[str, str]]) -> None:
    columns = ["loss", "size", "compared with", "ours ms", "lightly/ref ms", "ratio", "target", "met"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-+-".join("-" * widths[c] for c in columns))
    for row in rows:
        print(" | ".join(row[c].ljust(widths[c]) for c in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="timed repetitions per side (medians reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per side first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (both sides)")
    parser.add_argument("--resnet-resolution", type=int, default=32, help="input size of the ResNet-18 reference")
    parser.add_argument("--resnet-repeats", type=int, default=5, help="repetitions of the ResNet-18 reference case")
    parser.add_argument("--cases", nargs="+", default=["msn", "pmsn", "vicreg", "simclr", "swav", "dino", "singular_value"],
                        choices=["msn", "pmsn", "vicreg", "simclr", "swav", "dino", "singular_value", "mim"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides run there; timings synchronize the GPU)")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1 or args.resnet_repeats < 1 or args.resnet_resolution < 32:
        parser.error("need --repeats >= 1, --warmup >= 0, --threads >= 1, --resnet-repeats >= 1, --resnet-resolution >= 32")

    lightly_loss = import_lightly_loss()
    import lightly

    warnings.filterwarnings("ignore", message="To copy construct from a tensor")  # lightly's PMSN prior, every call
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)

    cases: List[Case] = []
    if "msn" in args.cases or "pmsn" in args.cases:
        msn, pmsn = prototype_cases(lightly_loss, generator, device=args.device)
        cases += [c for key, c in (("msn", msn), ("pmsn", pmsn)) if key in args.cases]
    if "vicreg" in args.cases:
        cases.append(vicreg_case(lightly_loss, generator, device=args.device))
    if "simclr" in args.cases:
        cases.append(simclr_case(lightly_loss, generator, device=args.device))
    if "swav" in args.cases:
        cases.append(swav_case(lightly_loss, generator, device=args.device))
    if "dino" in args.cases:
        cases.append(dino_case(lightly_loss, generator, device=args.device))
    if "singular_value" in args.cases:
        cases.append(singular_value_case(generator, args.resnet_resolution, args.resnet_repeats, device=args.device))

    print(f"torch {torch.__version__}, lightly {lightly.__version__}, {args.threads} thread(s), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"median of {args.repeats} alternated repetitions after {args.warmup} warm-up calls per side "
          f"({args.resnet_repeats} for the ResNet-18 case)")
    rows = []
    for case in cases:
        check = agreement(case)
        result = time_case(case, args.repeats, args.warmup)
        ratio = result["ours"] / result["theirs"]
        rows.append({
            "loss": case.name, "size": case.size, "compared with": case.compared_with,
            "ours ms": f"{result['ours']:.1f}", "lightly/ref ms": f"{result['theirs']:.1f}",
            "ratio": f"{ratio:.3g}", "target": f"<= {case.max_ratio:.2f}", "met": "yes" if ratio <= case.max_ratio else "NO",
        })
        print(f"  {case.name}: min ours {result['ours_min']:.1f} ms, min other {result['theirs_min']:.1f} ms; check: {check}",
              flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    if rows:
        print_table(rows)
    if "mim" in args.cases:
        steps = masked_image_modelling_steps(generator, args.repeats, args.warmup, device=args.device)
        reference = steps["msn_loss (anchor + target)"]
        print("\none training step on the same ViT (192-d, 6 blocks, 64 px / 8 px patches, batch 32):")
        for name, ms in steps.items():
            print(f"  {name:28s} {ms:8.1f} ms   {ms / reference:.2f} x MSN")


if __name__ == "__main__":
    main()
