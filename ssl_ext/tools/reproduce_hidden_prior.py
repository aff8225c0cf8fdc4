"""Reproduce the hidden-uniform-prior findings (Assran et al., ICLR 2023, arXiv:2210.07277) end to end.

    ssl-ext-run reproduce-hidden-prior                                   # CPU scale, ~15 min on 2 cores
    ssl-ext-run reproduce-hidden-prior --plan study/smoke/hidden_prior   # a 1-2 minute smoke test
    ssl-ext-run reproduce-hidden-prior --plan study/full/hidden_prior_imagenet_inat18 --out /checkpoint/hp
    ssl-ext-run reproduce-hidden-prior sampler_study.epochs=20 prior_study.taus=[0.25,0.5] seeds=[0,1,2]
    ssl-ext-run reproduce-hidden-prior --plan study/full/hidden_prior_imagenet_inat18 config.SLURM.PARTITION=gpu
    ... --dry-run                                # list (and validate) every run's config; run nothing

1. Sampler study: SimCLR, VICReg and MSN pretrained on class-balanced data with the
   class-balanced (K = all classes per batch) and class-imbalanced (K small) sampler,
   each linear-probed and kNN-evaluated: a table of accuracies and the drop per method.
2. Prior study: MSN and PMSN (power-law prior, tau swept) on long-tailed data, linear
   probe and kNN overall and on head/medium/tail classes, with the prototype usage.
Every run also gets the cluster analysis (ssl-ext-run cluster-analysis). The report
(report.md, plots, results.json) goes to --out (default: the plan's output_dir).

Positional ``key=value`` arguments override the plan (OmegaConf dotlist syntax; plan keys
are documented in ssl_ext/studies/hidden_prior/plan.py), except ``config.X=v`` (and
``+config...``/``~config...``), which go to every run's config. Runs that finished are
reused, so re-running after an interruption continues the study.
"""
import argparse
import logging
import sys
import warnings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="plan overrides, e.g. sampler_study.epochs=2")
    parser.add_argument("--plan", default="study/cpu/hidden_prior", help="plan name under configs_yaml or a YAML path")
    parser.add_argument("--out", default=None, help="output folder (default: the plan's output_dir)")
    parser.add_argument("--dry-run", action="store_true", help="compose and list every run's config, run nothing")
    args = parser.parse_intermixed_args(argv)
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    from ssl_ext.launch.worker import CurrentStderrHandler

    if not logging.getLogger().handlers:
        handler = CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
    from registry import RegistryError
    from ssl_ext.studies.hidden_prior.plan import PlanError
    from ssl_ext.studies.hidden_prior.study import command_line, dry_run, run_study
    from ssl_ext.config import ConfigError
    from ssl_ext.errors import UserError

    try:
        if args.dry_run:
            print("\n".join(dry_run(args.plan, args.overrides, args.out)))
            return 0
        study = run_study(args.plan, args.overrides, args.out, command=command_line() if argv is None else
                          " ".join(["tools/reproduce_hidden_prior.py", *argv]))
    except (PlanError, ConfigError, RegistryError, FileNotFoundError, UserError) as exc:
        # UserError: a run refused by the train engine (e.g. a run dir trained with another recipe).
        print(f"error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    print(f"Report: {study['report']['markdown']}  ({study['seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
