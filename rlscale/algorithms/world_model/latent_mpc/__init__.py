"""latent_mpc: planning in a learned latent world model (PlaNet; Hafner, Lillicrap, Fischer,
Villegas, Ha, Lee & Davidson 2019, "Learning Latent Dynamics for Planning from Pixels", ICML,
https://arxiv.org/abs/1811.04551, Sec. 2-3 and Algorithm 1).

The world model is rlscale's recurrent state-space model
(:class:`~rlscale.modules.world_models.WorldModel`, its loss in that module's docstring),
fitted on the Learner to sequences replayed from every episode so far
(:class:`~rlscale.algorithms.world_model.sequences.SequenceReplay`). Acting is model predictive
control in latent space, inside the RLModule's forward pass on the EnvRunners:

    s_t = (h_t, z_t) = mode of q(. | h_t, e(o_t)),  h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1})   (filter)
    a_{t:t+H} = argmin  - sum_{k=1..H} r(s_{t+k}),  s_{t+k} = prior mode after a_{t+k-1}   (CEM)
    act a_t (+ N(0, exploration_noise^2) when collecting, clipped to the action box)

with the cross-entropy method of :mod:`rlscale.modules.planning.cem` over action sequences in
``[-1, 1]`` (the env's box scaled), warm-started from the shifted previous plan. PlaNet's
Algorithm 1: ``random_warmup_steps`` of uniformly random actions ("seed episodes"), then
each iteration collects ``train_batch_size_per_learner`` env steps with the planner and noise,
and takes ``model_updates`` gradient steps on batches of ``model_batch_size`` sequences of
``sequence_length`` steps.

**From a dataset** (``--dataset``): the replay starts with every episode of the Minari dataset
and each iteration first fits the model. With ``offline: true`` (the default) that is all it
does: nothing is sampled for training and greedy episodes evaluate the planner every few
iterations. ``offline: false`` keeps collecting with the planner after fitting (no random
warm-up: the dataset stands for it). ``model_checkpoint`` starts from the world model of an
earlier ``latent_mpc`` run on the same env.
"""

from rlscale.algorithms.world_model.latent_mpc.algorithm import LatentMPC
from rlscale.algorithms.world_model.latent_mpc.config import LatentMPCConfig
from rlscale.algorithms.world_model.latent_mpc.learner import LatentMPCLearner
from rlscale.algorithms.world_model.latent_mpc.module import LatentMPCModule, world_model_spec

__all__ = [
    "LatentMPC",
    "LatentMPCConfig",
    "LatentMPCLearner",
    "LatentMPCModule",
    "world_model_spec",
]
