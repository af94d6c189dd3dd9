"""Tests of rlscale.modules.world_models: the recurrent state-space model (PlaNet, Dreamer).

Unit tests: shapes for vector and image observations with both latent kinds, the reset at
``is_first``, the straight-through gradient of categorical latents, the KL against
torch.distributions, KL balancing and free nats, the loss decreasing on a tiny batch, and bad
settings. The slow check trains the model on random-action Pendulum transitions and asks its
15-step open-loop reward predictions to correlate with the real rewards (issue 22).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from rlscale.algorithms.world_model.sequences import SequenceReplay
from rlscale.modules.world_models import (
    LatentState,
    WorldModel,
    WorldModelSpec,
    symexp,
    symlog,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"deterministic_size": 32, "stochastic_size": 8, "hidden_size": 32}
CATEGORICAL = {**SMALL, "latent": "categorical", "categorical_groups": 4, "categorical_classes": 5}
IMAGE = {**SMALL, "conv_depth": 4, "conv_layers": 3}


def vector_batch(batch=3, steps=5, obs_dim=3, action_dim=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    observations = torch.randn(batch, steps, obs_dim, generator=generator)
    actions = torch.rand(batch, steps, action_dim, generator=generator) * 2 - 1
    actions[:, 0] = 0
    rewards = torch.randn(batch, steps, generator=generator)
    continues = torch.ones(batch, steps)
    is_first = torch.zeros(batch, steps, dtype=torch.bool)
    is_first[:, 0] = True
    return observations, actions, rewards, continues, is_first


def image_batch(batch=2, steps=4, size=16, action_dim=1, seed=0):
    """Dark frames with a bright square that moves with the step, in a colour per sequence."""
    observations = torch.zeros(batch, steps, size, size, 3, dtype=torch.uint8)
    for b in range(batch):
        for t in range(steps):
            row, col = (3 * t) % (size - 4), (5 * b) % (size - 4)
            observations[b, t, row : row + 4, col : col + 4, b % 3] = 255
    _, actions, rewards, continues, is_first = vector_batch(batch, steps, 1, action_dim, seed)
    return observations, actions, rewards, continues, is_first


@pytest.mark.parametrize("latent", [SMALL, CATEGORICAL], ids=["gaussian", "categorical"])
def test_vector_shapes(latent):
    torch.manual_seed(0)
    model = WorldModel(WorldModelSpec((3,), 2, **latent))
    spec = model.spec
    observations, actions, rewards, continues, is_first = vector_batch()
    posteriors, priors = model.observe(observations, actions, is_first)
    assert posteriors.deterministic.shape == (3, 5, 32)
    assert posteriors.stochastic.shape == (3, 5, spec.stochastic_flat_size)
    assert posteriors.features().shape == (3, 5, spec.feature_size)
    assert priors.features().shape == (3, 5, spec.feature_size)
    start = posteriors.flatten()
    assert start.features().shape == (15, spec.feature_size)
    rollout = model.imagine(start, lambda f: torch.tanh(f[:, :2]), horizon=4)
    assert rollout.features.shape == (5, 15, spec.feature_size)
    assert rollout.actions.shape == (4, 15, 2)
    assert torch.equal(rollout.features[0], start.features())
    open_loop = model.imagine_actions(start, torch.zeros(6, 15, 2))
    assert open_loop.features.shape == (7, 15, spec.feature_size)
    assert model.predict_reward(open_loop.features).shape == (7, 15)
    continuing = model.predict_continue(open_loop.features)
    assert continuing.shape == (7, 15)
    assert ((continuing >= 0) & (continuing <= 1)).all()
    result = model.loss(observations, actions, rewards, continues, is_first)
    assert result.total.dim() == 0 and torch.isfinite(result.total)
    assert set(result.metrics) == {"recon", "reward", "continue", "kl", "total"}
    assert not result.posteriors.features().requires_grad


@pytest.mark.parametrize("latent", [IMAGE, {**CATEGORICAL, **IMAGE}], ids=["gaussian", "cat"])
def test_image_shapes(latent):
    torch.manual_seed(0)
    model = WorldModel(WorldModelSpec((16, 16, 3), 1, **latent))
    observations, actions, rewards, continues, is_first = image_batch()
    assert model.encoder(observations).shape[:2] == (2, 4)
    posteriors, _ = model.observe(observations, actions, is_first)
    assert model.decode(posteriors.features()).shape == (2, 4, 16, 16, 3)
    result = model.loss(observations, actions, rewards, continues, is_first)
    result.total.backward()
    assert model.encoder.net[0].weight.grad.abs().sum() > 0


def test_image_size_must_halve():
    with pytest.raises(ValueError, match="divisible by 16"):
        WorldModel(WorldModelSpec((20, 20, 3), 1, **{**IMAGE, "conv_layers": 4}))


@pytest.mark.parametrize("latent", [SMALL, CATEGORICAL], ids=["gaussian", "categorical"])
def test_is_first_resets_the_state(latent):
    """A sequence that restarts at step 2 filters steps 2.. exactly as a fresh sequence does,
    whatever came before (modes, not samples, so the comparison is exact)."""
    torch.manual_seed(0)
    model = WorldModel(WorldModelSpec((3,), 2, **latent))
    observations, actions, _, _, is_first = vector_batch(batch=1, steps=6)
    is_first[:, 2] = True
    posteriors, _ = model.observe(observations, actions, is_first, sample=False)
    fresh, _ = model.observe(observations[:, 2:], actions[:, 2:], is_first[:, 2:], sample=False)
    torch.testing.assert_close(posteriors.features()[:, 2:], fresh.features())
    # and without the reset the history matters
    is_first[:, 2] = False
    carried, _ = model.observe(observations, actions, is_first, sample=False)
    assert not torch.allclose(carried.features()[:, 2:], fresh.features())


def test_categorical_samples_are_one_hot_with_straight_through_gradients():
    torch.manual_seed(0)
    model = WorldModel(WorldModelSpec((3,), 2, **CATEGORICAL))
    observations, actions, _, _, is_first = vector_batch()
    posteriors, _ = model.observe(observations, actions, is_first)
    groups = posteriors.stochastic.detach().reshape(3, 5, 4, 5)
    # onehot + p - sg(p): one-hot up to rounding
    torch.testing.assert_close(groups, torch.nn.functional.one_hot(groups.argmax(-1), 5).float())
    posteriors.stochastic.sum().backward()  # the one-hot alone would give no gradient
    assert model.posterior_net[-1].weight.grad.abs().sum() > 0


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    model = WorldModel(WorldModelSpec((3,), 2, **SMALL))
    a = LatentState(torch.zeros(4, 1), torch.zeros(4, 8), torch.randn(4, 8), torch.rand(4, 8) + 0.1)
    b = LatentState(torch.zeros(4, 1), torch.zeros(4, 8), torch.randn(4, 8), torch.rand(4, 8) + 0.1)
    expected = kl_divergence(Normal(a.mean, a.std), Normal(b.mean, b.std)).sum(-1)
    torch.testing.assert_close(model.kl(a, b), expected)
    model = WorldModel(WorldModelSpec((3,), 2, **CATEGORICAL))
    a = LatentState(torch.zeros(4, 1), torch.zeros(4, 20), logits=torch.randn(4, 4, 5))
    b = LatentState(torch.zeros(4, 1), torch.zeros(4, 20), logits=torch.randn(4, 4, 5))
    expected = kl_divergence(Categorical(logits=a.logits), Categorical(logits=b.logits)).sum(-1)
    torch.testing.assert_close(model.kl(a, b), expected)


def _kl_gradients(
    model: WorldModel, free_nats: float, steps: int = 5
) -> tuple[float, float, float]:
    """``(raw KL, |grad| of the prior's net, |grad| of the posterior's net)`` of the KL term."""
    model.spec = WorldModelSpec(**{**model.spec.__dict__, "free_nats": free_nats})
    model.zero_grad()
    observations, actions, _, _, is_first = vector_batch(steps=steps)
    posteriors, priors = model.observe(observations, actions, is_first)
    kl, raw = model.kl_loss(posteriors, priors)
    kl.mean().backward()
    prior_grad = model.prior_net[-1].weight.grad
    posterior_grad = model.posterior_net[-1].weight.grad
    prior_grad = 0.0 if prior_grad is None else prior_grad.abs().sum().item()
    posterior_grad = 0.0 if posterior_grad is None else posterior_grad.abs().sum().item()
    return raw.max().item(), prior_grad, posterior_grad


def test_free_nats_cut_the_kl_gradient():
    torch.manual_seed(0)
    model = WorldModel(WorldModelSpec((3,), 2, **SMALL))
    largest_kl, prior_grad, posterior_grad = _kl_gradients(model, free_nats=0.0)
    assert prior_grad > 0 and posterior_grad > 0
    # every step's KL below the free nats: the term is a constant
    _, prior_grad, posterior_grad = _kl_gradients(model, free_nats=largest_kl + 1.0)
    assert prior_grad == 0 and posterior_grad == 0


def test_kl_balance_splits_the_gradient():
    """alpha = 1 trains only the prior, alpha = 0 only the posterior (DreamerV2's balancing).

    One step per sequence: over longer ones the prior at t also sees the posterior sample of
    t - 1 through h_t, so the dynamics term rightly reaches the posterior's net too."""
    torch.manual_seed(0)
    model = WorldModel(WorldModelSpec((3,), 2, **SMALL, kl_balance=1.0))
    _, prior_grad, posterior_grad = _kl_gradients(model, free_nats=0.0, steps=1)
    assert prior_grad > 0 and posterior_grad == 0
    model.spec = WorldModelSpec((3,), 2, **SMALL, kl_balance=0.0)
    _, prior_grad, posterior_grad = _kl_gradients(model, free_nats=0.0, steps=1)
    assert prior_grad == 0 and posterior_grad > 0


@pytest.mark.parametrize(
    ("shape", "latent", "batch"),
    [((3,), SMALL, vector_batch), ((16, 16, 3), {**CATEGORICAL, **IMAGE}, image_batch)],
    ids=["vector-gaussian", "image-categorical"],
)
def test_loss_decreases_on_a_tiny_batch(shape, latent, batch):
    torch.manual_seed(0)
    model = WorldModel(WorldModelSpec(shape, batch()[1].shape[-1], **latent))
    data = batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.loss(*data).metrics
    for _ in range(60):
        result = model.loss(*data)
        optimizer.zero_grad()
        result.total.backward()
        optimizer.step()
    last = model.loss(*data).metrics
    assert last["total"] < 0.7 * first["total"], (first, last)
    assert last["recon"] < 0.7 * first["recon"]
    assert last["reward"] < 0.7 * first["reward"]


def test_first_step_rewards_are_not_learned():
    """The reward at an episode's first step is a placeholder: changing it changes no loss."""
    torch.manual_seed(0)
    model = WorldModel(WorldModelSpec((3,), 2, **SMALL, latent="gaussian"))
    observations, actions, rewards, continues, is_first = vector_batch()
    torch.manual_seed(1)
    before = model.loss(observations, actions, rewards, continues, is_first).metrics
    rewards[:, 0] += 100.0
    continues[:, 0] = 0.0
    torch.manual_seed(1)
    after = model.loss(observations, actions, rewards, continues, is_first).metrics
    assert after["reward"] == pytest.approx(before["reward"])
    assert after["continue"] == pytest.approx(before["continue"])


def test_symlog_round_trip():
    x = torch.tensor([-100.0, -1.0, 0.0, 0.5, 1e3])
    torch.testing.assert_close(symexp(symlog(x)), x)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"latent": "beta"}, "latent must be one of"),
        ({"kl_balance": 1.5}, "kl_balance"),
        ({"free_nats": -1.0}, "free_nats"),
        ({"observation_shape": (3, 4)}, "observation_shape"),
        ({"deterministic_size": 0}, "deterministic_size"),
    ],
)
def test_bad_settings(change, message):
    with pytest.raises(ValueError, match=message):
        WorldModelSpec(**{"observation_shape": (3,), "action_dim": 1, **change})


# ------------------------------------------------------------------------- sequence replay


def test_sequences_are_aligned_windows_of_one_episode():
    replay = SequenceReplay(capacity_steps=1000, sequence_length=4, seed=0)
    steps = 6
    observations = np.arange(steps + 1, dtype=np.float32)[:, None] * np.ones(3, np.float32)
    actions = np.arange(1, steps + 1, dtype=np.float32)  # action t leads to observation t
    rewards = -np.arange(1, steps + 1, dtype=np.float32)
    replay.add_episode(observations, actions, rewards, terminated=True)
    assert replay.num_steps() == steps + 1
    batch = replay.sample(64)
    assert batch["observations"].shape == (64, 4, 3)
    assert batch["actions"].shape == (64, 4, 1)
    starts = batch["observations"][:, 0, 0].astype(int)
    assert set(starts) == {0, 1, 2, 3}  # every window that fits, none past the end
    for row, start in enumerate(starts):
        index = np.arange(start, start + 4)
        np.testing.assert_array_equal(batch["observations"][row, :, 0], index)
        # the action before observation t is t (zero before the first), the reward -t
        np.testing.assert_array_equal(batch["actions"][row, :, 0], np.where(index > 0, index, 0))
        np.testing.assert_array_equal(batch["rewards"][row], np.where(index > 0, -index, 0))
        np.testing.assert_array_equal(batch["is_first"][row], index == 0)
        np.testing.assert_array_equal(batch["continues"][row], index != steps)


def test_truncated_episodes_continue_and_chunks_join_their_episode():
    replay = SequenceReplay(capacity_steps=1000, sequence_length=5, seed=0)
    observations = np.arange(7, dtype=np.float32)[:, None]
    replay.add_episode(observations[:4], np.ones(3), np.ones(3), False, episode_id="a")
    assert not replay.can_sample()
    replay.add_episode(observations[:2], np.ones(1), np.ones(1), False, episode_id="b")
    replay.add_episode(observations[3:], np.ones(3), np.ones(3), False, episode_id="a")
    assert replay.num_episodes() == 2 and replay.num_steps() == 9
    batch = replay.sample(32)
    assert (batch["continues"] == 1).all()
    np.testing.assert_array_equal(np.diff(batch["observations"][..., 0], axis=1), 1)


def test_replay_drops_the_oldest_episodes():
    replay = SequenceReplay(capacity_steps=25, sequence_length=5, seed=0)
    for value in range(4):
        replay.add_episode(np.full((11, 1), value, np.float32), np.zeros(10), np.zeros(10), False)
    assert replay.num_steps() == 22 and replay.num_episodes() == 2
    assert set(np.unique(replay.sample(64)["observations"])) == {2.0, 3.0}


def test_replay_state_round_trip_gives_the_same_episodes_and_draws():
    replay = SequenceReplay(capacity_steps=100, sequence_length=5, seed=0)
    for value in range(3):
        replay.add_episode(np.full((11, 1), value, np.float32), np.zeros(10), np.zeros(10), True)
    replay.add_episode(np.zeros((6, 1)), np.zeros(5), np.zeros(5), False, episode_id="running")
    replay.sample(4)  # the generator has moved on
    restored = SequenceReplay(capacity_steps=100, sequence_length=5, seed=123)
    restored.set_state(replay.get_state())
    assert restored.num_steps() == replay.num_steps() == 39
    assert restored.num_episodes() == 4
    mine, theirs = restored.sample(16), replay.sample(16)
    for key, values in theirs.items():
        np.testing.assert_array_equal(mine[key], values)
    # The running episode can still be continued by its id.
    restored.add_episode(np.zeros((3, 1)), np.zeros(2), np.zeros(2), True, episode_id="running")
    assert restored.num_steps() == 41 and restored.num_episodes() == 4


def test_a_replay_of_other_sequences_is_refused_with_what_to_do():
    state = SequenceReplay(capacity_steps=100, sequence_length=5).get_state()
    with pytest.raises(ValueError, match="restore it with sequence_length=5"):
        SequenceReplay(capacity_steps=100, sequence_length=8).set_state(state)


def test_sampling_needs_an_episode_as_long_as_a_sequence():
    replay = SequenceReplay(capacity_steps=100, sequence_length=10, seed=0)
    replay.add_episode(np.zeros((5, 1)), np.zeros(4), np.zeros(4), True)
    with pytest.raises(ValueError, match="longest has 5"):
        replay.sample(2)


# ------------------------------------------------------------- prediction check (issue 22)

PREDICTION_CONTEXT = 10
PREDICTION_HORIZON = 15


def random_pendulum_episodes(count: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """``count`` 200-step Pendulum-v1 episodes under uniformly random torques."""
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    episodes = []
    for index in range(count):
        observation, _ = env.reset(seed=seed * 1000 + index)
        observations, actions, rewards = [observation], [], []
        for _ in range(200):
            action = rng.uniform(-2.0, 2.0, size=1).astype(np.float32)
            observation, reward, _, _, _ = env.step(action)
            observations.append(observation)
            actions.append(action / 2.0)  # the model sees actions in [-1, 1]
            rewards.append(reward)
        episodes.append(
            tuple(np.asarray(x, dtype=np.float32) for x in (observations, actions, rewards))
        )
    env.close()
    return episodes


def open_loop_rewards(model: WorldModel, episode, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Filter observations ``start .. start + context - 1``, then predict the next
    ``PREDICTION_HORIZON`` rewards open loop under the actions the env took:
    ``(predicted, real)``."""
    observations, actions, rewards = (torch.as_tensor(x) for x in episode)
    context, horizon = PREDICTION_CONTEXT, PREDICTION_HORIZON
    window = observations[start : start + context][None]
    before = torch.zeros(1, context, actions.shape[1])
    before[0, 1:] = actions[start : start + context - 1]  # action i led to observation i + 1
    is_first = torch.zeros(1, context, dtype=torch.bool)
    is_first[0, 0] = True
    posteriors, _ = model.observe(window, before, is_first, sample=False)
    last = start + context - 1
    taken = actions[last : last + horizon][:, None]  # [H, 1, A]
    rollout = model.imagine_actions(posteriors.map(lambda t: t[:, -1]), taken, sample=False)
    predicted = model.predict_reward(rollout.features[1:, 0])
    return predicted.numpy(), rewards[last : last + horizon].numpy()


@pytest.mark.slow
def test_open_loop_reward_predictions_correlate_with_the_real_rollout():
    """Issue 22's check: a world model trained on 4,000 random Pendulum transitions predicts
    15-step open-loop rewards with correlation >= 0.9 against the real ones under the same
    actions, on held-out episodes (seed 0: 0.974 after 600 updates, about 25 s on one thread;
    seeds 1 and 2 gave 0.956 and 0.978 after 500)."""
    torch.manual_seed(0)
    replay = SequenceReplay(capacity_steps=10_000, sequence_length=50, seed=0)
    for observations, actions, rewards in random_pendulum_episodes(20, seed=0):
        replay.add_episode(observations, actions, rewards, terminated=False)
    model = WorldModel(
        WorldModelSpec((3,), 1, deterministic_size=64, stochastic_size=16, hidden_size=64)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(600):
        batch = {key: torch.as_tensor(value) for key, value in replay.sample(16).items()}
        loss = model.loss(**batch).total
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
        optimizer.step()
    predicted, real = [], []
    with torch.no_grad():
        for episode in random_pendulum_episodes(4, seed=100):
            for start in range(0, 200 - PREDICTION_CONTEXT - PREDICTION_HORIZON, 25):
                guess, truth = open_loop_rewards(model, episode, start)
                predicted.append(guess)
                real.append(truth)
    correlation = np.corrcoef(np.concatenate(predicted), np.concatenate(real))[0, 1]
    print(f"15-step open-loop reward correlation: {correlation:.3f}")
    assert correlation >= 0.9
