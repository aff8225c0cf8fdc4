"""Adapters that run ssl_ext's plugins inside other training frameworks.

``ssl_ext.integrations.vissl``: ssl_ext losses, EMA teacher and samplers inside VISSL
0.1.6's own trainer and YAML configs. Importing an integration imports its framework,
so nothing here is imported by ``ssl_ext.plugins``.
"""
