"""State-only imitation learning by state-transition distribution matching, SOIL-TDM style.

Boborzi, Straehle, Buchner & Mikelsons 2022, "Imitation Learning by State-Only Distribution
Matching", https://arxiv.org/abs/2202.04332. Written from the paper; the authors' code carries
no license and was not read.

The demonstrations hold the expert's states only (a dataset's actions are never read). The
policy ``pi`` is trained to make the trajectories of state *transitions* it induces match the
expert's: it minimizes the KL divergence of the two transition-trajectory distributions,

    J(pi) = KL(p_pi(s_0..T) || p_E(s_0..T))
          = E_pi[ sum_t log p_pi(s_t+1 | s_t) - log p_E(s_t+1 | s_t) ],            (paper, eq. 4)

with the policy-induced transition density ``p_pi(s'|s) = int pi(a|s) p(s'|s, a) da``. That
integral is intractable; Bayes' rule writes it with the *inverse-action policy*
``pi'(a|s, s')``, the posterior of the policy's action given the transition it made:

    log p_pi(s'|s) = log pi(a|s) + log p(s'|s, a) - log pi'(a|s, s')      for any a,  (eq. 6)

so that, with the reward

    r(s, a, s') = log p_E(s'|s) - log p(s'|s, a) + log pi'(a|s, s'),                 (eq. 8)

minimizing J is maximizing ``E_pi[ sum_t r(s_t, a_t, s_t+1) - log pi(a_t|s_t) ]``: the soft
actor-critic objective with temperature 1 (eq. 9). The paper's algorithm, which this follows:

1. fit ``p_E(s'|s)`` once on the demonstrations' ``(s, s')`` pairs (a conditional flow);
2. the policy acts in the env (uniformly at random for the first
   ``num_steps_sampled_before_learning_starts`` env steps); transitions go to SAC's replay;
3. every ``model_train_interval`` env steps refit, on the replay, the forward model
   ``p(s'|s, a)`` (all of it) and the inverse-action model ``pi'(a|s, s')`` (the latest
   ``inverse_model_window`` transitions: it models the current policy);
4. SAC's updates (rlscale's SAC, ``rlscale.algorithms.value_based.sac``), each minibatch's env
   rewards replaced by ``r`` computed with the current models.

The mean of ``r - log pi`` over the agent's transitions estimates ``-J`` per step: the paper's
convergence measure, reported as ``imitation_reward_mean`` (``r`` alone) beside the flows'
held-out NLLs. The env's return is reported as the return; it is never trained on.

**What this adds to the paper** (each a config key, ``config.StateOnlyILConfig``):

- all three models are ``ConditionalFlow`` s of ``rlscale.modules.generative.flows`` over the
  state change ``s' - s`` (``densities``); for Discrete actions ``pi'`` is a categorical
  classifier (a flow needs a continuous variable);
- the flows over states are fitted to slightly noisy state changes (``density_noise``), so that
  deterministic dynamics do not make their log-ratio a measure of how long each was trained;
- ``r`` is clipped to ``[-reward_clip, reward_clip]``, and termination enters an absorbing
  state whose reward is the floor forever: the expert's transitions never end there, so its
  ``log p_E`` is as low as the reward goes (Kostrikov et al. 2019's absorbing states);
- the temperature is fixed at ``entropy_coefficient`` = 1, the KL's own weight.

**Discrete actions** (CartPole) use discrete soft actor-critic (Christodoulou 2019,
:mod:`.discrete_sac`): the paper's derivation is the SAC objective, and with a categorical
policy its expectations over actions are exact sums; the same Learner serves both kinds.
"""

from rlscale.algorithms.imitation.state_only_il.algorithm import StateOnlyIL
from rlscale.algorithms.imitation.state_only_il.config import (
    FixedTemperatureSACLearner,
    StateOnlyILConfig,
)
from rlscale.algorithms.imitation.state_only_il.densities import RewardParts, TransitionDensities
from rlscale.algorithms.imitation.state_only_il.discrete_sac import DiscreteSACModule

__all__ = [
    "DiscreteSACModule",
    "FixedTemperatureSACLearner",
    "RewardParts",
    "StateOnlyIL",
    "StateOnlyILConfig",
    "TransitionDensities",
]
