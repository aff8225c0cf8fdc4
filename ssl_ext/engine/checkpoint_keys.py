"""The entries of an ssl_ext training checkpoint, named once.

The trainer writes them; weight loading for evaluation (``ssl_ext.engine.weights``) and the
offline analysis (``ssl_ext.analysis.prototype_usage``) read them.
"""
STUDENT = "model"  # the student network (trunk + heads), what evaluation loads by default
TEACHER = "teacher"  # the EMA teacher, or None without one
LOSS = "loss"  # the loss module's state (MSN/PMSN prototypes, DINO's center, ...)
OPTIMIZER = "optimizer"
