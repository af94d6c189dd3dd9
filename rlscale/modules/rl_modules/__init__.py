"""RLModules several algorithms share: RLlib's module API over the networks in ``modules``."""
