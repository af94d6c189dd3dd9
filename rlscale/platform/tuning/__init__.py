"""Tuning sweeps: sweep files (``sweep``), Ray Tune objects (``search``), the trial
(``trainable``), the run and its summary (``run``), the live table and the curves plot."""

from rlscale.platform.tuning.sweep import Sweep, SweepError, load_sweep

__all__ = ["Sweep", "SweepError", "load_sweep"]
