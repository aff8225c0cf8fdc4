"""Experiment drivers built on ssl_ext (not plugins; plugin discovery never imports them).

* :mod:`ssl_ext.studies.hidden_prior` -- the hidden-prior reproduction (sampler study and
  PMSN prior study), run by ``tools/reproduce_hidden_prior.py``.
"""
