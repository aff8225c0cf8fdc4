"""The hidden-uniform-prior reproduction (tools/reproduce_hidden_prior.py): plan, data subset, runs, report."""
