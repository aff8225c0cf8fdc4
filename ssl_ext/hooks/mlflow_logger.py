from __future__ import annotations

import time

from registry import register_hook
from ssl_ext.hooks import _tracking
from ssl_ext.hooks.base import SSLHook
from ssl_ext.utils.containers import flatten

RUN_ID_FILE = "mlflow_run_id.txt"
PLOTS_FOLDER = "plots"
# MLflow's limits for one log_batch call.
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_VALUE_CHARS = 6000


@register_hook("mlflow_logger")
class MlflowLoggerHook(SSLHook):
    """Logs a run to MLflow (rank 0): the metrics.jsonl scalars, the config and the end-of-run plots.

    Turned on with ``config.HOOKS.MLFLOW.ENABLED=true`` (needs ``pip install 'ssl_ext[mlflow]'``),
    configured by ``config.HOOKS.MLFLOW``: ``TRACKING_URI`` (a server, ``sqlite:///mlflow.db``, or
    a local ``file:`` store; empty: MLflow's default or ``MLFLOW_TRACKING_URI``), ``EXPERIMENT``
    (created when missing) and ``RUN_NAME`` (default: the run directory's name).

    Every record is logged at ``step = iteration``; the config becomes the run's parameters
    (flattened keys such as ``config.OPTIMIZER.BASE_LR``) and the artifact
    ``train_config.yaml``; at the end every ``*.png`` of the run directory is stored under the
    artifact folder ``plots/`` and the run is marked finished. A relaunch that resumes the
    training continues the same MLflow run (its id is kept in ``<run_dir>/mlflow_run_id.txt``).
    """

    SWITCH = "config.HOOKS.MLFLOW.ENABLED"

    def __init__(self) -> None:
        super().__init__()
        _tracking.require_package("mlflow", "mlflow", self.SWITCH)
        self.client = None
        self.run_id = None

    def on_start(self, task) -> None:
        if task.rank != 0:
            return
        from mlflow.tracking import MlflowClient

        settings = task.cfg.config.HOOKS.MLFLOW
        self.client = MlflowClient(tracking_uri=str(settings.TRACKING_URI) or None)
        self.run_id = self._resumable_run_id(task)
        if self.run_id is None:
            experiment = self.client.get_experiment_by_name(str(settings.EXPERIMENT))
            experiment_id = (
                experiment.experiment_id if experiment is not None else self.client.create_experiment(str(settings.EXPERIMENT))
            )
            run = self.client.create_run(experiment_id, run_name=_tracking.default_run_name(task, str(settings.RUN_NAME)))
            self.run_id = run.info.run_id
            _tracking.save_run_id(task.run_dir, RUN_ID_FILE, self.run_id)
            self._log_config(task)
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def _resumable_run_id(self, task):
        run_id = _tracking.saved_run_id(task.run_dir, RUN_ID_FILE)
        if run_id is None:
            return None
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:  # a run of another tracking store: start a new one here
            return None
        return run_id

    def _log_config(self, task) -> None:
        from mlflow.entities import Param

        params = [
            Param(key, str(value)[:MAX_PARAM_VALUE_CHARS]) for key, value in flatten(_tracking.config_dict(task))
        ]
        for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[start:start + MAX_PARAMS_PER_BATCH])
        self.client.log_text(self.run_id, _tracking.config_yaml(task), "train_config.yaml")

    def write_metrics(self, task, record) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        step, values = _tracking.scalars(record)
        now_ms = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, now_ms, step) for key, value in values.items()])

    def on_end(self, task) -> None:
        if self.client is None:
            return
        for path in _tracking.run_plots(task.run_dir):
            self.client.log_artifact(self.run_id, path, PLOTS_FOLDER)
        self.client.set_terminated(self.run_id)
        self.client = None
