"""IQ-Learn: inverse soft-Q learning (Garg, Chakraborty, Cundy, Song & Ermon 2021, "IQ-Learn:
Inverse soft-Q Learning for Imitation", NeurIPS, https://arxiv.org/abs/2106.12142).

Written from the paper; the authors' code is licensed for research use only and they state a
patent on the method (see docs/imitation.md).

Inverse RL looks for a reward under which the expert is optimal, then a policy for it. IQ-Learn
learns one soft Q-function instead: with a soft value ``V`` and its policy ``pi``, the inverse
soft Bellman operator gives the reward each ``Q`` implies, ``r(s, a, s') = Q(s, a) - gamma V(s')``
(``V(s') = 0`` when ``s'`` ends the episode). The paper shows that the inverse-RL objective,
written in ``Q``, is concave and maximized directly (its eq. 10):

    max_Q  E_expert[ phi(Q(s, a) - gamma V(s')) ]  -  (1 - gamma) E_rho0[ V(s_0) ].

``phi`` is the divergence's concave function; for the chi-squared divergence the paper uses,
``phi(r) = r - r^2 / (4 alpha)`` (``chi2_alpha``, the paper's alpha = 0.5). The initial-state
term telescopes (the paper's Sec. 5.1) to ``E_rho[V(s) - gamma V(s')]`` over the transitions of
any policy's occupancy ``rho``, so the loss minimized on each minibatch is

    - E_expert[r] + E_reg[r^2] / (4 alpha) + E_rho[V(s) - gamma V(s')],   r = Q(s, a) - gamma V(s').

- **Offline** (``online=False``): ``rho`` is the expert's own transitions, and so is the
  regularizer's ``reg``: the paper's offline objective.
- **Online** (``online=True``; the paper's Algorithm 1): the policy acts in the env, its
  transitions fill a replay buffer, and each minibatch is half expert, half replay. ``rho`` is
  that mixture; the chi-squared regularizer is taken over the mixture too by default
  (``chi2_on_mixture``: it keeps the recovered reward of the policy's transitions bounded as
  well; ``False`` keeps it on the expert's transitions).

The gradient runs through ``V(s')`` as well: this is the objective's own gradient, not a TD
semi-gradient, so there is no target network.

**Episode ends** (``absorbing_terminals``, on by default): the paper takes ``V(s') = 0`` after a
terminal transition. Where the policy's episodes end and the expert's do not (a pole that falls),
a recovered reward below zero on the policy's states then makes ending early the better choice.
As in Kostrikov et al. 2019 ("Discriminator-Actor-Critic"), a terminal transition leads instead
to an absorbing state that loops on itself; only the policy reaches it, and the loss's own terms
for it are minimized by ``V = -2 alpha / (1 - gamma)`` (``losses.absorbing_value``), which is
used directly.

**Discrete actions** (``SoftQModule``): ``V(s) = tau log sum_a exp(Q(s,a)/tau)`` and
``pi ∝ exp(Q/tau)`` exactly (``temperature`` tau); evaluation acts greedily, ``argmax Q``.

**Continuous actions** (the paper's Sec. 5 for continuous spaces; ``IQLearnActorCriticModule``
on the shared SAC-style module with twin critics and a tanh-squashed Gaussian actor): the soft
value has no closed form, so it is estimated with the actor's samples,
``V(s) = Q(s, a~) - alpha log pi(a~|s)``, ``a~ ~ pi(.|s)`` (``temperature`` alpha; the samples
held fixed in the critic's loss), and the actor is updated as in SAC against the learned
critics, ``min_pi E_s[alpha log pi(a~|s) - min_i Q_i(s, a~)]`` on the minibatch's states. Each
critic minimizes the loss above with its own ``V``. ``learn_temperature`` tunes alpha to a
target entropy as SAC does; by default it stays fixed, since alpha sets the scale of the
reward the critic recovers. Evaluation acts with tanh(mean).

The reward it recovers, ``r`` above, is logged every iteration with its Pearson correlation
with the env's reward on the minibatches where that reward varies
(``recovered_reward_correlation``; CartPole's reward is constant, so it has none; Pendulum's
varies).
"""

from rlscale.algorithms.imitation.iq_learn.algorithm import IQLearn
from rlscale.algorithms.imitation.iq_learn.config import IQLearnConfig
from rlscale.algorithms.imitation.iq_learn.learner import (
    IQ_LOSS,
    RECOVERED_REWARD_CORRELATION,
    RECOVERED_REWARD_MEAN,
    ContinuousIQLearnLearner,
    IQLearnLearner,
)
from rlscale.algorithms.imitation.iq_learn.losses import (
    chi2_iq_objective,
    continuous_iq_loss,
    iq_learn_loss,
    pearson_correlation,
    sampled_soft_value,
)

__all__ = [
    "IQ_LOSS",
    "RECOVERED_REWARD_CORRELATION",
    "RECOVERED_REWARD_MEAN",
    "ContinuousIQLearnLearner",
    "IQLearn",
    "IQLearnConfig",
    "IQLearnLearner",
    "chi2_iq_objective",
    "continuous_iq_loss",
    "iq_learn_loss",
    "pearson_correlation",
    "sampled_soft_value",
]
