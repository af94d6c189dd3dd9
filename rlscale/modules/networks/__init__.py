"""Plain torch networks: MLPs, ensembles of MLPs, actor-critic and Q heads."""
