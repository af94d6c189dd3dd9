"""Dreamer: a latent world model learned from replayed sequences, and an actor-critic learned
purely in its imagination.

DreamerV1 (Hafner, Lillicrap, Ba & Norouzi 2020, "Dream to Control: Learning Behaviors by
Latent Imagination", ICLR, https://arxiv.org/abs/1912.01603, Algorithm 1), with three later
refinements: KL balancing (DreamerV2, Hafner et al. 2021, https://arxiv.org/abs/2010.02193),
free bits, and return normalization by percentiles (DreamerV3, Hafner et al. 2023,
https://arxiv.org/abs/2301.04104, Sec. 3). Every ``1 / train_ratio`` of a replayed batch's
B x L steps of env interaction, the Learner takes one update on B sequences of L steps:

1. **World model** (:class:`~rlscale.modules.world_models.WorldModel`, an RSSM): one Adam step
   on its loss (reconstruction, reward, continue, KL balanced with free nats); its posteriors
   s_0 ~ q(z | h, o) of all B x L steps (detached) are the starts of imagination.
2. **Imagination**: from each start, ``horizon`` H = 15 steps of the prior under the actor,
   a_t ~ π(a | s_t) (a tanh-Gaussian, reparameterized), with the world model's weights fixed;
   rewards r_t, continue probabilities c_t from its heads, values v'(s_t) from the slow critic.
3. **λ-returns** (Dreamer eq. 6, recursively; λ = ``return_lambda``, γ = ``gamma``):

       R_H = v'(s_H),   R_t = r_{t+1} + γ c_{t+1} ((1 − λ) v'(s_{t+1}) + λ R_{t+1})

   each step weighted by w_t = c_1 ... c_t, the chance the imagined episode still runs.
4. **Actor** (DreamerV1's dynamics backpropagation, for continuous actions): maximize
   E[w_t (R_t / max(1, S) + η H[π(· | s_t)])], the gradient of R_t flowing back through the
   imagined rewards, values and latent transitions into every earlier action. S is DreamerV3's
   return scale, an EMA (``return_scale_decay``) of the 5th-to-95th percentile range of R; the
   entropy H is estimated by −log π(a_t | s_t) of the sampled action, η = ``entropy_scale``.
   Minus ``actor_mean_penalty`` · ½ E[μ_t²], a pull of the pre-tanh means toward zero (as the
   original implementation of SAC regularizes its tanh-Gaussian policy, Haarnoja et al. 2018,
   https://arxiv.org/abs/1801.01290), so that a mean pushed onto an action bound cannot run
   off to where tanh is flat and the return's gradient vanishes.
5. **Critic**: regress f(s_t) onto symlog(sg(R_t)) (squared error, weighted by w_t), with
   v = symexp(f) (DreamerV3's squashing, so Pendulum's returns of hundreds are learned like
   returns near one); the slow critic v' follows it by Polyak averaging with ``critic_tau``
   after each update (DreamerV2/V3's slow target, which the λ-returns bootstrap from).

The EnvRunners hold an inference-only copy of the module (world model and actor, no critic) on
CPU: each env step updates the episode's posterior with the new observation and the previous
action (the module's recurrent state, :mod:`.module`) and acts with the actor: a sample when
exploring, tanh(mean) when greedy. The first ``random_warmup_steps`` env steps act uniformly
at random. With ``--dataset`` (``dataset_dir``) the replay starts with the dataset's episodes
(actions mapped onto [-1, 1]) and ``pretrain_updates`` updates run on them first; training then
goes on online as above, without the random warm-up.

Choices where the papers differ: a squared-error reward head (DreamerV1) and a symlog critic
rather than DreamerV3's two-hot bins; the actor's return not baselined (a baseline would change
a dynamics-backpropagation gradient); actor and critic learning rates of 4e-4 instead of
DreamerV1's 8e-5, for CPU budgets of thousands rather than millions of env steps; imagination
from ``imagination_starts`` of the B x L posteriors; continuous (Box) actions only.
"""

from rlscale.algorithms.world_model.dreamer.algorithm import Dreamer
from rlscale.algorithms.world_model.dreamer.config import DreamerConfig
from rlscale.algorithms.world_model.dreamer.learner import (
    DreamerLearner,
    lambda_returns,
    survival_weights,
)
from rlscale.algorithms.world_model.dreamer.module import DreamerModule, ReturnNormalizer

__all__ = [
    "Dreamer",
    "DreamerConfig",
    "DreamerLearner",
    "DreamerModule",
    "ReturnNormalizer",
    "lambda_returns",
    "survival_weights",
]
