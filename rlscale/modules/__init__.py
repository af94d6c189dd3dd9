"""Torch building blocks shared by algorithms (encoders, heads, dynamics, generative models).

Plain ``torch.nn`` modules wrapped by RLModules; this package knows nothing of RLlib's
training loop.
"""
