"""A vectorized sampling path: RLlib's ``SingleAgentEnvRunner`` contract without its per-step
machinery.

RLlib's runner does, per vector-env step, an env-to-module connector pass over N episode objects,
a forward pass, a module-to-env connector pass that un-batches every column into N items, and N
``add_env_step`` calls; on CartPole that bookkeeping costs several times the env itself.
:class:`VectorEnvRunner` keeps the same ``sample()`` contract and does per vector step only what
the default pipelines amount to:

1. the observations of all N envs, already in a preallocated ``[T + 1, N, ...]`` NumPy buffer,
   viewed as one torch tensor (no copy) and passed to ``forward_exploration`` (with RLlib's
   ``t``) or ``forward_inference``;
2. the actions drawn as RLlib's ``GetActions`` draws them: the module's own ``actions`` if it
   outputs them, else a sample of the exploration distribution (``explore``) or of the
   deterministic inference distribution, with its log-prob when the module gave none;
3. ``NormalizeAndClipActions`` for Box actions (unsquash [-1, 1] onto bounded Boxes and clip,
   or clip only), vectorized; the episode keeps the module's actions;
4. one ``env.step``; rewards, flags, the actions and every extra model output (action log-prob,
   distribution inputs, value predictions when the module emits them, the weights' sequence
   number) written into ``[T, N, ...]`` buffers;
5. the observation filter (``MeanStdFilter``, rlscale's ``normalize_observations``) applied to
   the new observations with RLlib's semantics: every observation the vector env returns is
   pushed once, in env order, into the connector's own running statistics (state, buffer and
   deltas, so checkpoints and the merge across runners see the same numbers), and each is
   normalized with the statistics right after its own push.

The ``SingleAgentEpisode`` chunks are built once per ``sample()`` call from slices of those
arrays, with RLlib's autoreset bookkeeping (Gymnasium's ``NEXT_STEP`` mode, as RLlib makes its
vector envs: the step after a done is a reset step whose action the env ignores and which counts
no env step), the same ids across calls, the same one-step lookback buffer
(``episode_lookback_horizon``), the same ``t_started``, the same dtypes (RLlib's
``TensorToNumpy`` reduces float64 to float32 and int64 to int32) and the same metrics, except the
connector pipelines' own timers and counters (no pipeline runs); the module-inference and env-step
timers are logged once per call, as the mean per vector step.

Per call rather than per step: the module is put in eval mode once (TorchRLModule's
``forward_*`` toggle it on every call), torch runs one intra-op thread (see
:func:`one_intra_op_thread`), and a categorical exploration draw skips the two distribution
objects (:func:`categorical_sample`, the same operations and random draws).

What it does not handle it leaves to RLlib's runner: :func:`vector_sampling_problem` says why at
config time (the config then keeps RLlib's runner; see ``RlscaleConfigMixin``), and the runner
checks again once it has its env, module and pipelines (:meth:`VectorEnvRunner.fallback_reason`;
then every call goes to RLlib's own ``_sample``). Sampling whole episodes (``num_episodes``, as
``rlscale evaluate`` does) always runs RLlib's own loop: it is not the training hot path.
"""

from rlscale.algorithms.common.vector_env_runner.checks import (
    RLLIB_RUNNER,
    VECTOR_RUNNER,
    vector_sampling_problem,
)
from rlscale.algorithms.common.vector_env_runner.filters import VectorFilter, push_rows
from rlscale.algorithms.common.vector_env_runner.runner import VectorEnvRunner

__all__ = [
    "RLLIB_RUNNER",
    "VECTOR_RUNNER",
    "VectorEnvRunner",
    "VectorFilter",
    "push_rows",
    "vector_sampling_problem",
]
