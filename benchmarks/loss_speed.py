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
    parser.add_argument("--cases", nargs="+", default=["msn", "pmsn", "vicreg", "simclr", "singular_value"],
                        choices=["msn", "pmsn", "vicreg", "simclr", "singular_value"])
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
    print_table(rows)


if __name__ == "__main__":
    main()
