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
import os
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
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of a user error (also SSL_EXT_DEBUG=1)")
    return parser


def expand_launcher_shorthand(item: str) -> str:
    """``launcher=slurm_cpu`` is short for ``+config/launcher@_global_=slurm_cpu`` (configs_yaml/launcher/)."""
    if item.startswith("launcher="):
        return "+config/launcher@_global_=" + item[len("launcher="):]
    return item


def main(argv: Optional[List[str]] = None) -> int:
    """Exit codes: 0 done, 2 a user error (one message naming the key, file or value and the fix,
    no traceback; ``--debug`` or ``SSL_EXT_DEBUG=1`` shows it), 1 a run that stopped itself with an
    explanation (e.g. a non-finite loss). A bug inside ssl_ext still prints its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("SSL_EXT_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    from registry import RegistryError
    from ssl_ext.errors import UserError

    try:
        return _main(argv)
    except (UserError, RegistryError) as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))


def _main(argv: List[str]) -> int:
    # fvcore (imported through Classy Vision's hooks) scripts a function at import time; recent torch versions
    # warn that torch.jit.script is deprecated, on every run, which would bury our one-line errors.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    from ssl_ext.tools import SUBCOMMANDS, run_subcommand

    if argv and argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:])
    parser = _parser(with_listing=any(a in ("-h", "--help") for a in argv))
    args = parser.parse_args(argv)
    from omegaconf import OmegaConf

    from ssl_ext.config import compose_config

    overrides = [expand_launcher_shorthand(o) for o in args.overrides]
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
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
