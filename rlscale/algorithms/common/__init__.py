"""Helpers more than one algorithm family uses: the config mixin, loss and target-network
helpers, the flat transition replay, the offline training step and defaults, the Minari offline
input."""
