"""Torch building blocks shared by algorithms, and the RLModules that wrap them.

- ``networks``: MLPs, ensembles of MLPs, actor-critic and Q networks, target copies;
- ``distributions``: the squashed Gaussian (and its policy network);
- ``rl_modules``: RLModules several algorithms share (actor-critic, discrete Q, SAC-style,
  tabular Q);
- ``dynamics``: models of how a system moves (``predict(state, action)``), analytic or learned;
- ``planning``: trajectory optimizers and receding-horizon control over such models (iLQR, DDP,
  CEM, MPPI);
- ``generative``: density models and samplers (conditional normalizing flows).

Plain ``torch.nn`` modules, wrapped by RLModules; this package knows nothing of RLlib's
training loop (RLModule API only).
"""
