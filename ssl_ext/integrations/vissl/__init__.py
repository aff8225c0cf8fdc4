"""ssl_ext's plugins inside VISSL 0.1.6's own trainer and YAML configs.

Turn it on by launching VISSL through ssl_ext's copy of its launcher::

    python -m ssl_ext.integrations.vissl.run_distributed_engines config=pretrain/my_pmsn

which imports this package (registering the pieces below in VISSL's registries) and
runs VISSL's ``launch_distributed`` with :func:`ssl_ext_hook_generator`. The YAML then
uses, through VISSL's own extension points:

* ``config.LOSS.name: ssl_ext_loss`` with ``{NAME, PARAMS}`` of any ssl_ext loss
  (:mod:`.loss`), its views and its EMA teacher;
* ``config.TRAINER.TASK_NAME: ssl_ext_task`` (:mod:`.task`), which trains loss-owned
  parameters such as prototypes and builds the teacher;
* ``config.DATA.TRAIN.SSL_EXT_SAMPLER: {NAME, PARAMS}`` for ssl_ext's samplers
  (class-imbalanced, class-balanced, power-law, ...);
* ``config.MODEL.TRUNK.NAME: ssl_ext_trunk`` with ``SSL_EXT_TRUNK: {NAME, PARAMS, MASK_STUDENT}``
  for ssl_ext's trunks (:mod:`.trunk`), e.g. the ViT whose patch drop gives MSN's masked anchors.

Importing this package imports VISSL; the compatibility shims of :mod:`.compat` are
applied first. See the README section "Inside VISSL".
"""
from ssl_ext.integrations.vissl.compat import apply_vissl_shims

apply_vissl_shims()

from ssl_ext.integrations.vissl.trunk import TRUNK_NAME, SSLExtTrunk  # noqa: E402
from ssl_ext.integrations.vissl.loss import LOSS_NAME, SSLExtLoss, ViewLayout, infer_view_layout  # noqa: E402
from ssl_ext.integrations.vissl.task import TASK_NAME, SSLExtTask, VisslSampler, ssl_ext_get_sampler  # noqa: E402
from ssl_ext.integrations.vissl.hooks import (  # noqa: E402
    EMATeacherHook, LossTermsLogHook, ViewLayoutHook, ssl_ext_hook_generator, ssl_ext_hooks,
)

__all__ = [
    "LOSS_NAME", "TASK_NAME", "TRUNK_NAME", "SSLExtTrunk", "SSLExtLoss", "SSLExtTask", "ViewLayout", "infer_view_layout", "VisslSampler",
    "ssl_ext_get_sampler", "EMATeacherHook", "LossTermsLogHook", "ViewLayoutHook", "ssl_ext_hook_generator",
    "ssl_ext_hooks", "apply_vissl_shims",
]
