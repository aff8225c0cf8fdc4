"""``run_distributed_engines`` (VISSL's entry point): compose a config and run its engine.

    python tools/run_distributed_engines.py config=pretrain/simclr_digits config.OPTIMIZER.NUM_EPOCHS=2
    ssl-ext-run config=... --print-config      # print the composed, validated config and exit
    ssl-ext-run config=... launcher=slurm_cpu [--dry-run]      # the same run on SLURM
    ssl-ext-run config=... config.OPTIMIZER.BASE_LR=0.1,0.3   # a sweep: one run per value
    ssl-ext-run <subcommand> --help   # the tools: dataset preparation, benchmark suite, ... (listed below)
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import List, Optional

USAGE = "run_distributed_engines.py config=<yaml under configs_yaml or absolute path> [config.SECTION.KEY=value ...]"


def plugin_listing() -> str:
    import registry

    lines = []
    for kind, reg in registry.ALL_REGISTRIES.items():
        lines.append(f"  {reg.plural:14s} {', '.join(reg.names())}")
    return "\n".join(lines)


def _parser(with_listing: bool) -> argparse.ArgumentParser:
    from ssl_ext.tools import subcommand_listing

    epilog = None
    if with_listing:
        epilog = (
            "subcommands (ssl-ext-run <subcommand> --help):\n" + subcommand_listing()
            + "\n\nregistered plugins (engines are chosen with config.ENGINE_NAME):\n" + plugin_listing()
        )
    parser = argparse.ArgumentParser(
        prog="run_distributed_engines", usage=USAGE, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog,
    )
    parser.add_argument("overrides", nargs="*", help="config=<yaml> and config.SECTION.KEY=value overrides (hydra syntax)")
    parser.add_argument("--print-config", action="store_true", help="print the composed, validated config and exit")
    parser.add_argument("--dry-run", action="store_true", help="with SLURM: print the sbatch script and config, submit nothing")
    return parser


def expand_launcher_shorthand(item: str) -> str:
    """``launcher=slurm_cpu`` is short for ``+config/launcher@_global_=slurm_cpu`` (configs_yaml/launcher/)."""
    if item.startswith("launcher="):
        return "+config/launcher@_global_=" + item[len("launcher="):]
    return item


def main(argv: Optional[List[str]] = None) -> int:
    # fvcore (imported through Classy Vision's hooks) scripts a function at import time; recent torch versions
    # warn that torch.jit.script is deprecated, on every run, which would bury our one-line errors.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    from ssl_ext.tools import SUBCOMMANDS, run_subcommand

    if argv and argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:])
    parser = _parser(with_listing=any(a in ("-h", "--help") for a in argv))
    args = parser.parse_args(argv)
    from omegaconf import OmegaConf

    from ssl_ext.config import ConfigError, compose_config
    from registry import RegistryError

    overrides = [expand_launcher_shorthand(o) for o in args.overrides]
    try:
        from ssl_ext.launch.sweep import split_sweep

        if split_sweep(overrides)[1]:
            from ssl_ext.launch.sweep import launch_sweep

            launch_sweep(overrides, dry_run=args.dry_run)
            return 0
        cfg = compose_config(overrides)
        if args.print_config:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            return 0
        from ssl_ext.launch.dispatch import launch

        result = launch(cfg, overrides, dry_run=args.dry_run)
    except (ConfigError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
