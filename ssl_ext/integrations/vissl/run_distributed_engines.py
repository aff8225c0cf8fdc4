"""VISSL's ``tools/run_distributed_engines.py`` with ssl_ext's plugins loaded.

    python -m ssl_ext.integrations.vissl.run_distributed_engines config=pretrain/my_pmsn [overrides...]

Same arguments and behaviour as VISSL's script (Hydra overrides, ``config=`` looked up in
``./configs/config`` and VISSL's bundled configs, SLURM via ``config.SLURM.USE_SLURM``),
except that ``ssl_ext.integrations.vissl`` is imported first and its hook generator is
used, so ``ssl_ext_loss``, ``ssl_ext_task`` and ``SSL_EXT_SAMPLER`` work. Processes that
VISSL spawns re-import this module, so they get the same plugins.
"""
from __future__ import annotations

import sys
from typing import Callable, List, Optional

from ssl_ext.integrations.vissl.compat import apply_vissl_shims

apply_vissl_shims()

import ssl_ext.integrations.vissl  # noqa: E402,F401  (registers ssl_ext_loss and ssl_ext_task)
from ssl_ext.integrations.vissl.hooks import ssl_ext_hook_generator  # noqa: E402


def hydra_main(overrides: List[str], hook_generator: Callable = ssl_ext_hook_generator) -> None:
    """Compose VISSL's config from ``overrides`` and run its engine, as VISSL's launcher does."""
    from vissl.utils.distributed_launcher import launch_distributed, launch_distributed_on_slurm
    from vissl.utils.hydra_config import compose_hydra_configuration, convert_to_attrdict

    args, config = convert_to_attrdict(compose_hydra_configuration(overrides))
    if config.SLURM.USE_SLURM:
        # VISSL's SLURM path uses its default hook generator in the job; ssl_ext's hooks are
        # still needed there, so refuse rather than run without them.
        raise SystemExit(
            "config.SLURM.USE_SLURM: VISSL's SLURM launcher always uses its own hook generator, which lacks "
            "ssl_ext_loss's hooks. Submit `python -m ssl_ext.integrations.vissl.run_distributed_engines` as the "
            "job's command instead (one task per node, config.SLURM.USE_SLURM=false)."
        )
    launch_distributed(cfg=config, node_id=args.node_id, engine_name=args.engine_name, hook_generator=hook_generator)


def main(argv: Optional[List[str]] = None) -> None:
    hydra_main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
