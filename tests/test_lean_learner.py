"""The lean minibatch loop of PPO, A2C and the cloning Learners (BC, DAgger, BCO) against
RLlib's update path on the same batch."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.learner.learner import Learner
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.minibatch_utils import MiniBatchCyclicIterator

from rlscale.algorithms.common.lean_update import LeanUpdateMixin, minibatch_schedule
from rlscale.algorithms.common.vector_env_runner import VectorEnvRunner
from rlscale.algorithms.imitation import BCOConfig, DAggerConfig
from rlscale.algorithms.offline.bc import BCConfig
from rlscale.algorithms.policy_gradient import A2CConfig, PPOConfig, TRPOConfig
from rlscale.platform.experiment import ExperimentSpec, prepare

MODULE = "default_policy"
TOLERANCE = 1e-6

# --- the schedule is RLlib's cyclic iterator's ------------------------------------------------


def _rllib_minibatch_rows(num_rows, minibatch_size, num_epochs, shuffle, total):
    batch = MultiAgentBatch({MODULE: SampleBatch({"row": np.arange(num_rows)})}, num_rows)
    iterator = MiniBatchCyclicIterator(
        batch,
        num_epochs=num_epochs,
        minibatch_size=minibatch_size,
        shuffle_batch_per_epoch=shuffle,
        num_total_minibatches=total,
    )
    return [list(minibatch.policy_batches[MODULE]["row"]) for minibatch in iterator]


def _lean_minibatch_rows(num_rows, minibatch_size, num_epochs, shuffle, total):
    order, rows = np.arange(num_rows), []
    for segments, permutations in minibatch_schedule(
        num_rows,
        minibatch_size=minibatch_size,
        num_epochs=num_epochs,
        shuffle=shuffle,
        num_total_minibatches=total,
    ):
        taken = []
        for start, end in segments:
            if start < 0:
                order = order[permutations[end]]
            else:
                taken.extend(order[start:end])
        rows.append(taken)
    return rows


@pytest.mark.parametrize(
    ("num_rows", "minibatch_size", "num_epochs", "shuffle", "total"),
    [
        (256, 64, 3, True, 0),  # exact division: every epoch ends on a minibatch's end
        (200, 64, 3, True, 0),  # minibatches that run over the batch's end
        (50, 64, 2, True, 0),  # a minibatch larger than the batch
        (200, 64, 2, False, 0),
        (200, 64, 1, True, 7),  # num_total_minibatches
    ],
)
def test_schedule_draws_rllibs_minibatches_for_the_same_seed(
    num_rows, minibatch_size, num_epochs, shuffle, total
):
    args = (num_rows, minibatch_size, num_epochs, shuffle, total)
    np.random.seed(3)
    theirs = _rllib_minibatch_rows(*args)
    after_theirs = np.random.random()
    np.random.seed(3)
    mine = _lean_minibatch_rows(*args)
    assert [list(map(int, rows)) for rows in mine] == [list(map(int, r)) for r in theirs]
    # The same number of draws from NumPy's global generator.
    assert np.random.random() == after_theirs


# --- one update, lean against RLlib's ----------------------------------------------------------


def _config(config_class, env: str, **training):
    return config_class().environment(env).training(**training).debugging(seed=0)


def _episodes(config, steps: int):
    torch.manual_seed(0)
    runner = VectorEnvRunner(config=config)
    episodes = runner.sample(num_timesteps=steps, explore=True)
    runner.stop()
    return episodes


def _learner(config, env: str, weights=None):
    learner = config.build_learner(env=gym.make(env))
    if weights is not None:
        learner.module.set_state(weights)
    return learner


class _Recorder:
    """Each minibatch's losses and raw gradients (before clipping), in parameter order."""

    def __init__(self, learner):
        self.losses, self.gradients = [], []
        compute = learner.compute_gradients
        parameters = list(learner.module[MODULE].parameters())

        def recording(loss_per_module, **kwargs):
            gradients = compute(loss_per_module, **kwargs)
            self.losses.append(float(loss_per_module[MODULE].detach()))
            self.gradients.append([p.grad.detach().clone() for p in parameters])
            return gradients

        learner.compute_gradients = recording


def _flat_metrics(results, prefix=()):
    flat = {}
    for key, value in results.items():
        if isinstance(value, dict):
            flat.update(_flat_metrics(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value.peek() if hasattr(value, "peek") else value
    return flat


def _update_both(config_class, env: str, steps: int, **training):
    """(lean learner, RLlib-path learner, their recorders, their results) after one update."""
    episodes = _episodes(_config(config_class, env, **training), steps)
    lean = _learner(_config(config_class, env, **training), env)
    reference = _learner(
        _config(config_class, env, lean_updates=False, **training), env, lean.module.get_state()
    )
    assert lean.lean_problem is None
    assert reference.lean_problem == "lean_updates is off"
    records, results, after = [], [], []
    for learner in (lean, reference):
        records.append(_Recorder(learner))
        config = learner.config
        np.random.seed(11)
        results.append(
            learner.update(
                episodes=copy.deepcopy(episodes),
                timesteps={},
                num_epochs=config.num_epochs,
                minibatch_size=config.minibatch_size,
                shuffle_batch_per_epoch=config.shuffle_batch_per_epoch,
            )
        )
        after.append(np.random.random())
    assert after[0] == after[1], "the two paths drew different numbers of shuffles"
    return lean, reference, records, [_flat_metrics(r) for r in results]


def _assert_same_update(lean, reference, records, metrics, expected_steps):
    mine, theirs = records
    assert len(mine.losses) == len(theirs.losses) == expected_steps
    # The first minibatch: equal loss and gradients.
    assert mine.losses[0] == pytest.approx(theirs.losses[0], abs=TOLERANCE)
    for g_mine, g_theirs in zip(mine.gradients[0], theirs.gradients[0], strict=True):
        torch.testing.assert_close(g_mine, g_theirs, atol=TOLERANCE, rtol=0)
    # Every later minibatch, and the parameters after the whole update.
    assert mine.losses == pytest.approx(theirs.losses, abs=TOLERANCE)
    for step_mine, step_theirs in zip(mine.gradients, theirs.gradients, strict=True):
        for g_mine, g_theirs in zip(step_mine, step_theirs, strict=True):
            torch.testing.assert_close(g_mine, g_theirs, atol=TOLERANCE, rtol=0)
    for p_mine, p_theirs in zip(
        lean.module[MODULE].parameters(), reference.module[MODULE].parameters(), strict=True
    ):
        torch.testing.assert_close(p_mine, p_theirs, atol=TOLERANCE, rtol=0)
    # The same metrics under the same keys (throughputs and timers aside).
    lean_metrics, reference_metrics = metrics
    assert lean_metrics.keys() == reference_metrics.keys()
    for key, value in reference_metrics.items():
        if any("throughput" in str(part) or "timer" in str(part) for part in key):
            continue
        assert np.asarray(lean_metrics[key], dtype=float) == pytest.approx(
            np.asarray(value, dtype=float), abs=TOLERANCE, nan_ok=True
        ), key


def _expected_minibatches(num_rows, minibatch_size, num_epochs):
    return sum(
        1
        for _ in minibatch_schedule(
            num_rows, minibatch_size=minibatch_size, num_epochs=num_epochs, shuffle=False
        )
    )


def _rows(flat_metrics):
    """Rows trained on in one update (summed over minibatches), from its results."""
    return int(flat_metrics[(MODULE, "num_module_steps_trained")])


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_ppo_lean_update_equals_rllibs(env):
    # 200 env steps do not split into minibatches of 64: some run over the batch's end.
    lean, reference, records, metrics = _update_both(
        PPOConfig, env, 200, train_batch_size_per_learner=200, minibatch_size=64, num_epochs=3
    )
    # RLlib's minibatches all hold minibatch_size rows.
    assert _rows(metrics[1]) == 64 * len(records[1].losses)
    _assert_same_update(lean, reference, records, metrics, len(records[1].losses))
    assert len(records[0].losses) >= 3 * 3  # at least 3 epochs of >= 3 minibatches


def test_a2c_lean_update_equals_rllibs():
    lean, reference, records, metrics = _update_both(
        A2CConfig, "CartPole-v1", 256, train_batch_size_per_learner=256
    )
    _assert_same_update(lean, reference, records, metrics, 1)


def test_ppo_kl_early_stop_is_kept():
    # A tiny target_kl stops the epochs after the first minibatch that moves the policy.
    lean, reference, records, metrics = _update_both(
        PPOConfig,
        "CartPole-v1",
        200,
        train_batch_size_per_learner=200,
        minibatch_size=64,
        num_epochs=3,
        target_kl=1e-9,
        lr=1e-2,
    )
    _assert_same_update(lean, reference, records, metrics, len(records[1].losses))
    # Both count every minibatch the schedule yields, and step on fewer of them.
    assert len(records[0].losses) < _rows(metrics[0]) // 64 == _rows(metrics[1]) // 64
    assert lean._kl_stopped and reference._kl_stopped


@pytest.mark.parametrize("poison", [None, float("nan"), float("inf")])
def test_applying_gradients_after_one_finiteness_check_steps_as_rllib_does(poison):
    """The lean step's gradient application (one total-norm check) against RLlib's
    ``apply_gradients`` (two isfinite checks per tensor) on the same gradients: the same
    parameters after the step, also where a gradient is not finite (RLlib zeroes it)."""
    config = _config(A2CConfig, "CartPole-v1")
    lean = _learner(config, "CartPole-v1")
    reference = _learner(config, "CartPole-v1", lean.module.get_state())
    generator = torch.Generator().manual_seed(0)
    gradients = [torch.randn(p.shape, generator=generator) for p in lean._params.values()]
    if poison is not None:
        gradients[1].view(-1)[0] = poison
    for learner, apply in ((lean, lean._apply_gradients), (reference, reference.apply_gradients)):
        apply({pid: g.clone() for pid, g in zip(learner._params, gradients, strict=True)})
    for p_mine, p_theirs in zip(
        lean.module[MODULE].parameters(), reference.module[MODULE].parameters(), strict=True
    ):
        assert torch.isfinite(p_mine).all()
        torch.testing.assert_close(p_mine, p_theirs, atol=0, rtol=0)


def _labelled_batch(env: str, rows: int) -> MultiAgentBatch:
    """Random states of ``env`` with random actions (in the policy's [-1, 1] for a Box)."""
    space = gym.make(env)
    space.observation_space.seed(0)
    space.action_space.seed(0)
    observations = np.stack([space.observation_space.sample() for _ in range(rows)])
    actions = np.stack([space.action_space.sample() for _ in range(rows)])
    if isinstance(space.action_space, gym.spaces.Box):
        actions = np.clip(actions / space.action_space.high, -0.99, 0.99)
    batch = SampleBatch({"obs": observations.astype(np.float32), "actions": actions})
    return MultiAgentBatch({MODULE: batch}, rows)


@pytest.mark.parametrize(
    ("config_class", "env"),
    [
        (BCConfig, "CartPole-v1"),
        (BCConfig, "Pendulum-v1"),
        (DAggerConfig, "CartPole-v1"),
        (BCOConfig, "Pendulum-v1"),
    ],
)
def test_cloning_lean_update_equals_rllibs(config_class, env):
    # 200 labelled states in minibatches of 64, one pass: the last runs over the batch's end.
    batch = _labelled_batch(env, 200)
    lean = _learner(_config(config_class, env), env)
    reference = _learner(
        _config(config_class, env, lean_updates=False), env, lean.module.get_state()
    )
    assert lean.lean_problem is None
    assert reference.lean_problem == "lean_updates is off"
    records, results = [], []
    for learner in (lean, reference):
        records.append(_Recorder(learner))
        results.append(
            learner.update(
                batch=copy.deepcopy(batch), timesteps={}, num_epochs=1, minibatch_size=64
            )
        )
    metrics = [_flat_metrics(r) for r in results]
    _assert_same_update(lean, reference, records, metrics, 4)
    assert _rows(metrics[0]) == 4 * 64


# --- where the lean path does not apply ---------------------------------------------------


def _forbid_lean_loop(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the lean loop ran")

    monkeypatch.setattr(LeanUpdateMixin, "_lean_epochs", fail)


def _rllib_update_calls(monkeypatch) -> list:
    calls = []
    update = Learner.update

    def counting(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return update(self, *args, **kwargs)

    monkeypatch.setattr(Learner, "update", counting)
    return calls


def test_switch_off_runs_rllibs_loop(monkeypatch):
    config = _config(
        PPOConfig,
        "CartPole-v1",
        train_batch_size_per_learner=128,
        minibatch_size=64,
        num_epochs=1,
        lean_updates=False,
    )
    episodes = _episodes(config, 128)
    learner = _learner(config, "CartPole-v1")
    _forbid_lean_loop(monkeypatch)
    calls = _rllib_update_calls(monkeypatch)
    learner.update(episodes=episodes, timesteps={}, num_epochs=1, minibatch_size=64)
    assert calls == ["PPOLearner"]


def test_lean_path_runs_when_on(monkeypatch):
    config = _config(PPOConfig, "CartPole-v1", train_batch_size_per_learner=128)
    episodes = _episodes(config, 128)
    learner = _learner(config, "CartPole-v1")
    num_rows = sum(len(e) + 1 for e in episodes)  # one bootstrap step per episode chunk
    calls = _rllib_update_calls(monkeypatch)
    results = learner.update(episodes=episodes, timesteps={}, num_epochs=1, minibatch_size=64)
    assert calls == []
    assert _rows(_flat_metrics(results)) == 64 * _expected_minibatches(num_rows, 64, 1)


def test_multi_agent_falls_back_to_rllibs_loop(monkeypatch):
    observations = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    actions = gym.spaces.Discrete(2)
    config = (
        PPOConfig()
        .training(train_batch_size_per_learner=64, minibatch_size=32, num_epochs=1)
        .multi_agent(policies={"p0", "p1"}, policy_mapping_fn=lambda agent, *a, **k: agent)
    )
    learner = config.build_learner(
        spaces={"p0": (observations, actions), "p1": (observations, actions)}
    )
    assert "multi-agent" in learner.lean_problem
    _forbid_lean_loop(monkeypatch)
    calls = _rllib_update_calls(monkeypatch)
    rows = 64
    batch = {
        "obs": torch.rand(rows, 4) * 2 - 1,
        "actions": torch.randint(0, 2, (rows,)),
        "action_logp": torch.full((rows,), float(np.log(0.5))),
        "action_dist_inputs": torch.zeros(rows, 2),
        "advantages": torch.randn(rows),
        "value_targets": torch.randn(rows),
        "vf_preds": torch.zeros(rows),
    }
    multi_agent = MultiAgentBatch(
        {mid: SampleBatch({k: v.clone() for k, v in batch.items()}) for mid in ("p0", "p1")},
        rows,
    )
    learner.update(batch=multi_agent, timesteps={}, num_epochs=1, minibatch_size=32)
    assert calls == ["PPOLearner"]


# --- the key ------------------------------------------------------------------------------


def test_lean_updates_key_is_validated_and_on_where_the_loop_applies():
    for config_class in (PPOConfig, A2CConfig, BCConfig, DAggerConfig, BCOConfig):
        assert config_class().lean_updates is True
        assert "lean_updates" in config_class().rlscale_keys()
    assert PPOConfig().training(lean_updates=False).lean_updates is False
    assert "lean_updates" not in TRPOConfig().rlscale_keys()  # TRPO keeps RLlib's loop
    config = PPOConfig().environment("CartPole-v1").training(lean_updates="yes")
    with pytest.raises(ValueError, match="lean_updates must be true or false"):
        config.validate()
    # What `rlscale train ppo --set lean_updates=false` builds.
    spec = ExperimentSpec(
        algorithm="ppo", env="CartPole-v1", seed=0, hyperparameters={"lean_updates": False}
    )
    assert prepare(spec).config.lean_updates is False
