"""The runtime: experiment spec, Ray connection, runner, evaluation, outputs and progress."""
