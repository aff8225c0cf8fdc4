"""Run a list of benchmarks on one checkpoint and write one table.

    ssl-ext-run benchmark-suite config=benchmark/suite/tiny_cpu \
        --weights runs/demo/checkpoints/model_iteration00000100.torch [--source teacher] [config.X=v ...]

``config=`` selects a suite config (``BENCHMARK.SUITE.BENCHMARKS`` lists the
benchmark configs; ``MODEL.TRUNK`` must match the checkpoint). ``--weights`` and
``--source`` set ``MODEL.WEIGHTS_INIT``; without ``--weights`` the suite evaluates
a random initialisation (a useful floor). The suite launches like any engine
(local processes with ``config.DISTRIBUTED.NUM_PROC_PER_NODE``, SLURM with
``config.SLURM.USE_SLURM=true``) and writes ``results.md``/``results.json`` into
``config.BENCHMARK.OUTPUT_DIR`` (default ``<CHECKPOINT.DIR>/benchmark_suite``).
"""
import argparse
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config=<suite yaml> and config.SECTION.KEY=value overrides")
    parser.add_argument("--weights", default=None, help="checkpoint or state dict to evaluate (MODEL.WEIGHTS_INIT.PARAMS_FILE)")
    parser.add_argument("--source", choices=("student", "teacher"), default=None, help="network inside an ssl_ext checkpoint")
    parser.add_argument("--print-config", action="store_true", help="print the composed suite config and exit")
    args = parser.parse_intermixed_args(argv)  # overrides may come before and after the options
    if not any(o.startswith("config=") for o in args.overrides):
        parser.error("give the suite config, e.g. config=benchmark/suite/tiny_cpu")
    overrides = list(args.overrides) + ["config.ENGINE_NAME=benchmark_suite"]
    if args.weights is not None:
        if not os.path.exists(args.weights) and "://" not in args.weights:
            parser.error(f"--weights {args.weights}: no such file")
        # Quoted so paths with '=' or ',' survive hydra's override grammar.
        overrides.append(f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE='{args.weights}'")
    if args.source is not None:
        overrides.append(f"config.MODEL.WEIGHTS_INIT.SOURCE={args.source}")
    if args.print_config:
        overrides.append("--print-config")
    from ssl_ext.cli import main as run_engine

    return run_engine(overrides)


if __name__ == "__main__":
    sys.exit(main())
