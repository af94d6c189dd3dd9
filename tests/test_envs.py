"""rlscale.envs: names -> spaces and environments, for Gymnasium and PettingZoo.

No test here starts Ray: the RLlib pieces used (MultiAgentEnv, EnvContext, the env registry
before ``ray.init``) work without a running cluster.
"""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlscale.envs import (
    MULTI_AGENT_MODES,
    RECORD_VIDEO_KEY,
    EnvInfo,
    EnvListing,
    lane_keeping,
    list_envs,
    make_env,
    multi_agent_policies,
    point_mass,
    register_with_rllib,
    resolve_env,
)
from rlscale.errors import RlscaleError, SpecError, UnknownEnvironmentError

SPREAD = "pettingzoo:mpe2.simple_spread_v3"
SPEAKER_LISTENER = "pettingzoo:mpe2.simple_speaker_listener_v4"
TICTACTOE = "pettingzoo:classic.tictactoe_v3"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# --- resolve_env: Gymnasium ------------------------------------------------------------------


def test_resolve_cartpole_reads_its_spaces():
    info = resolve_env("CartPole-v1")

    assert info == EnvInfo(
        "CartPole-v1",
        "gymnasium",
        info.observation_space,
        gym.spaces.Discrete(2),
        family="classic_control",
    )
    assert isinstance(info.observation_space, gym.spaces.Box)
    assert info.observation_space.shape == (4,)
    assert not info.is_multi_agent
    assert info.agent_ids == ()


def test_resolve_mujoco_hopper_reads_its_spaces():
    info = resolve_env("Hopper-v5")

    assert info.kind == "gymnasium"
    assert info.family == "mujoco"
    assert info.observation_space.shape == (11,)
    assert isinstance(info.action_space, gym.spaces.Box)
    assert info.action_space.shape == (3,)


def test_resolve_passes_env_config_to_the_environment():
    default = resolve_env("Hopper-v5")
    with_positions = resolve_env("Hopper-v5", {"exclude_current_positions_from_observation": False})

    assert with_positions.observation_space.shape == (default.observation_space.shape[0] + 1,)


# --- resolve_env: PettingZoo -----------------------------------------------------------------


def test_resolve_pettingzoo_env_gives_per_agent_spaces():
    info = resolve_env(SPREAD)

    assert info.kind == "pettingzoo"
    assert info.family == "mpe2"
    assert info.is_multi_agent
    assert info.agent_ids == ("agent_0", "agent_1", "agent_2")
    assert isinstance(info.observation_space, gym.spaces.Dict)
    assert set(info.observation_space.keys()) == set(info.agent_ids)
    for agent in info.agent_ids:
        assert info.observation_space[agent].shape == (18,)
        assert info.action_space[agent] == gym.spaces.Discrete(5)


def test_resolve_pettingzoo_env_config_changes_the_agents():
    info = resolve_env(SPREAD, {"N": 2})

    assert info.agent_ids == ("agent_0", "agent_1")
    assert info.observation_space["agent_0"].shape == (12,)


@pytest.mark.parametrize(
    "spelling",
    [
        "pettingzoo:simple_spread_v3",  # bare env name, unique across families
        "pettingzoo:mpe.simple_spread_v3",  # MPE's old PettingZoo family name
        "pettingzoo:mpe2/simple_spread-v3",  # PettingZoo registry spelling
    ],
)
def test_pettingzoo_name_spellings_reach_the_same_env(spelling):
    info = resolve_env(spelling)

    assert info.name == spelling
    assert info.agent_ids == ("agent_0", "agent_1", "agent_2")


def test_resolve_pettingzoo_agents_with_different_spaces():
    info = resolve_env(SPEAKER_LISTENER)

    assert set(info.agent_ids) == {"speaker_0", "listener_0"}
    assert info.observation_space["speaker_0"].shape == (3,)
    assert info.observation_space["listener_0"].shape == (11,)
    assert info.action_space["speaker_0"] == gym.spaces.Discrete(3)
    assert info.action_space["listener_0"] == gym.spaces.Discrete(5)


def test_resolve_turn_based_pettingzoo_env():
    info = resolve_env(TICTACTOE)

    assert info.agent_ids == ("player_1", "player_2")
    assert info.action_space["player_1"] == gym.spaces.Discrete(9)
    assert set(info.observation_space["player_1"].keys()) == {"action_mask", "observation"}


# --- errors ----------------------------------------------------------------------------------


def test_unknown_gymnasium_name_suggests_close_matches():
    with pytest.raises(UnknownEnvironmentError) as raised:
        resolve_env("CartPol-v1")

    message = str(raised.value)
    assert "'CartPol-v1'" in message
    assert "Did you mean: CartPole-v1" in message
    assert "rlscale envs" in message
    assert isinstance(raised.value, SpecError)


def test_unknown_pettingzoo_name_suggests_close_matches():
    with pytest.raises(UnknownEnvironmentError) as raised:
        make_env("pettingzoo:mpe2.simple_sprad_v3")

    message = str(raised.value)
    assert "'pettingzoo:mpe2.simple_sprad_v3'" in message
    assert "Did you mean: pettingzoo:mpe2.simple_spread_v3" in message
    assert "rlscale envs" in message


def test_unknown_pettingzoo_family_is_unknown():
    with pytest.raises(UnknownEnvironmentError, match="rlscale envs"):
        resolve_env("pettingzoo:nofamily.simple_spread_v3")


@pytest.mark.skipif(_installed("Box2D"), reason="Box2D is installed here")
def test_missing_gymnasium_dependency_names_the_pip_package():
    with pytest.raises(RlscaleError, match=r'pip install "gymnasium\[box2d\]"'):
        resolve_env("LunarLander-v3")


@pytest.mark.skipif(_installed("pymunk"), reason="pymunk is installed here")
def test_missing_pettingzoo_dependency_names_the_pip_package():
    with pytest.raises(RlscaleError, match=r'pip install "pettingzoo\[butterfly\]"') as raised:
        resolve_env("pettingzoo:butterfly.pistonball_v6")

    assert "pymunk" in str(raised.value)


def test_mpe_envs_without_mpe2_installed_name_the_package(monkeypatch):
    from rlscale.envs import pettingzoo as pettingzoo_envs

    real_package_dir = pettingzoo_envs._package_dir
    monkeypatch.setattr(
        pettingzoo_envs,
        "_package_dir",
        lambda package: None if package == "mpe2" else real_package_dir(package),
    )

    with pytest.raises(RlscaleError, match=r'pip install "mpe2"'):
        resolve_env("pettingzoo:mpe.simple_spread_v3")


def test_bad_env_config_key_is_named():
    with pytest.raises(RlscaleError, match="'no_such_option'") as raised:
        resolve_env("CartPole-v1", {"no_such_option": 1})

    assert "sutton_barto_reward" in str(raised.value)  # lists the keys CartPole does take


@pytest.mark.parametrize(
    ("name", "typo", "meant"),
    [
        ("Hopper-v5", "forward_reward_weigth", "forward_reward_weight"),
        (SPREAD, "max_cycle", "max_cycles"),
    ],
)
def test_misspelled_env_config_key_suggests_the_right_one(name, typo, meant):
    with pytest.raises(RlscaleError, match=f"'{typo}'.*Did you mean: {meant}"):
        make_env(name, {typo: 1})


def test_bad_env_config_value_is_an_rlscale_error():
    with pytest.raises(RlscaleError, match="'N'"):
        resolve_env(SPREAD, {"N": "three"})


# --- make_env --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CartPole-v1", "Hopper-v5"])
def test_make_gymnasium_env_steps(name):
    env = make_env(name, {"max_episode_steps": 5})
    try:
        observation, _ = env.reset(seed=0)
        assert env.observation_space.contains(observation)
        steps = 0
        done = False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            assert np.isfinite(reward)
            steps += 1
            done = terminated or truncated
        assert steps <= 5
    finally:
        env.close()


def test_make_pettingzoo_env_is_an_rllib_multi_agent_env():
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    env = make_env(SPREAD, {"max_cycles": 3})
    try:
        assert isinstance(env, MultiAgentEnv)
        assert env.possible_agents == ["agent_0", "agent_1", "agent_2"]
        assert env.get_observation_space("agent_1").shape == (18,)
        assert env.get_action_space("agent_1") == gym.spaces.Discrete(5)

        observations, _ = env.reset(seed=0)
        assert sorted(observations) == env.possible_agents
        for step in range(3):
            actions = {agent: env.get_action_space(agent).sample() for agent in env.agents}
            observations, rewards, terminateds, truncateds, _ = env.step(actions)
            assert set(rewards) == set(env.possible_agents)
            assert all(np.isfinite(r) for r in rewards.values())
            assert truncateds["__all__"] == (step == 2)  # max_cycles=3 truncates every agent
        assert env.agents == []  # follows the live agents
    finally:
        env.close()


def test_make_pettingzoo_env_accepts_rllib_env_context():
    from ray.rllib.env.env_context import EnvContext

    env = make_env(SPREAD, EnvContext({"N": 2}, worker_index=1, num_workers=1))
    try:
        assert env.possible_agents == ["agent_0", "agent_1"]
    finally:
        env.close()


def test_pettingzoo_env_renders():
    env = make_env(SPREAD, {"render_mode": "rgb_array"})
    try:
        env.reset(seed=0)
        frame = env.render()
        assert frame.ndim == 3 and frame.shape[-1] == 3
    finally:
        env.close()


def test_make_turn_based_pettingzoo_env_plays_a_game():
    env = make_env(TICTACTOE)
    try:
        observations, _ = env.reset(seed=0)
        assert list(observations) == ["player_1"]  # only the agent whose turn it is
        moves = 0
        terminateds = {"__all__": False}
        while not terminateds["__all__"]:
            ((agent, observation),) = observations.items()
            legal_move = int(np.flatnonzero(observation["action_mask"])[0])
            observations, rewards, terminateds, _, _ = env.step({agent: legal_move})
            moves += 1
        # Always taking the first free square, player_1 wins down the first column.
        assert moves == 7
        assert rewards == {"player_1": 1, "player_2": -1}
    finally:
        env.close()


# --- video recording -------------------------------------------------------------------------


def test_record_video_key_never_reaches_gymnasium_make(monkeypatch, tmp_path):
    calls = []
    real_make = gym.make

    def spying_make(env_id, **kwargs):
        calls.append(kwargs)
        return real_make(env_id, **kwargs)

    monkeypatch.setattr(gym, "make", spying_make)
    env = make_env("CartPole-v1", {RECORD_VIDEO_KEY: str(tmp_path), "max_episode_steps": 4})
    env.close()

    assert calls == [{"render_mode": "rgb_array", "max_episode_steps": 4}]


def test_resolve_ignores_the_record_video_key(tmp_path):
    info = resolve_env("CartPole-v1", {RECORD_VIDEO_KEY: str(tmp_path)})

    assert info.action_space == gym.spaces.Discrete(2)
    assert list(tmp_path.iterdir()) == []


def test_record_video_is_refused_for_multi_agent_envs(tmp_path):
    with pytest.raises(RlscaleError, match="single-agent"):
        resolve_env(SPREAD, {RECORD_VIDEO_KEY: str(tmp_path)})


def test_record_video_without_moviepy_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "moviepy", None)  # makes `import moviepy` fail
    with pytest.raises(RlscaleError, match='pip install "moviepy"'):
        make_env("CartPole-v1", {RECORD_VIDEO_KEY: str(tmp_path)})


def test_record_video_writes_one_file_per_episode(tmp_path):
    from gymnasium.wrappers import RecordVideo

    env = make_env("CartPole-v1", {RECORD_VIDEO_KEY: str(tmp_path), "max_episode_steps": 5})
    assert isinstance(env, RecordVideo)
    for episode in range(2):
        env.reset(seed=episode)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.close()

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "eval-episode-0.mp4",
        "eval-episode-1.mp4",
    ]


# --- list_envs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listing() -> dict[str, EnvInfo | EnvListing]:
    return {entry.name: entry for entry in list_envs()}


def test_list_envs_has_spaces_for_buildable_envs(listing):
    cartpole = listing["CartPole-v1"]
    assert isinstance(cartpole, EnvInfo)
    assert cartpole.action_space == gym.spaces.Discrete(2)

    spread = listing[SPREAD]
    assert isinstance(spread, EnvInfo)
    assert spread.agent_ids == ("agent_0", "agent_1", "agent_2")
    assert isinstance(listing["Hopper-v5"], EnvInfo)


def test_list_envs_notes_what_unbuildable_envs_need(listing):
    if _installed("Box2D"):
        pytest.skip("Box2D is installed here, so LunarLander builds")
    lunar = listing["LunarLander-v3"]

    assert isinstance(lunar, EnvListing)
    assert lunar.family == "box2d"
    assert lunar.note == 'needs: pip install "gymnasium[box2d]"'


def test_list_envs_covers_both_families(listing):
    kinds = {entry.kind for entry in listing.values()}
    families = {entry.family for entry in listing.values()}

    assert kinds == {"gymnasium", "pettingzoo"}
    assert {"classic_control", "toy_text", "mujoco", "box2d", "mpe2", "butterfly"} <= families


def test_list_envs_filters_by_family_or_kind():
    mujoco = list_envs(family="mujoco")
    pettingzoo = list_envs(include_spaces=False, family="pettingzoo")

    assert mujoco and {entry.family for entry in mujoco} == {"mujoco"}
    assert "Hopper-v5" in {entry.name for entry in mujoco}
    assert pettingzoo and {entry.kind for entry in pettingzoo} == {"pettingzoo"}
    assert SPREAD in {entry.name for entry in pettingzoo}


def test_list_envs_without_spaces_builds_nothing():
    entries = list_envs(include_spaces=False)

    assert entries and all(isinstance(entry, EnvListing) for entry in entries)
    assert "CartPole-v1" in {entry.name for entry in entries}


# --- multi-agent policies --------------------------------------------------------------------


def test_shared_policy_mode_maps_every_agent_to_one_policy():
    policies, mapping_fn = multi_agent_policies(resolve_env(SPREAD), "shared")

    assert policies == {"shared"}
    # RLlib calls it as (agent_id, episode, **kwargs), e.g. worker=None while inferring spaces.
    assert {mapping_fn(agent, None, worker=None) for agent in ("agent_0", "agent_2")} == {"shared"}


def test_per_agent_policy_mode_gives_each_agent_its_own_policy():
    info = resolve_env(SPREAD)
    policies, mapping_fn = multi_agent_policies(info, "per_agent")

    assert policies == set(info.agent_ids)
    assert [mapping_fn(agent, None) for agent in info.agent_ids] == list(info.agent_ids)


def test_shared_policy_needs_agents_with_equal_spaces():
    info = resolve_env(SPEAKER_LISTENER)

    with pytest.raises(SpecError, match="per_agent"):
        multi_agent_policies(info, "shared")
    policies, _ = multi_agent_policies(info, "per_agent")
    assert policies == {"speaker_0", "listener_0"}


def test_unknown_policy_mode_and_single_agent_env_are_spec_errors():
    with pytest.raises(SpecError, match="Did you mean: per_agent"):
        multi_agent_policies(resolve_env(SPREAD), "per-agent")
    with pytest.raises(SpecError, match="single-agent"):
        multi_agent_policies(resolve_env("CartPole-v1"), "shared")
    assert MULTI_AGENT_MODES == ("shared", "per_agent")


# --- RLlib registration (no Ray started) -----------------------------------------------------


@pytest.mark.parametrize("name", ["CartPole-v1", SPREAD])
def test_register_with_rllib_registers_a_picklable_creator(name):
    from ray.rllib.env.multi_agent_env import MultiAgentEnv
    from ray.tune.registry import ENV_CREATOR, _global_registry

    env_id = register_with_rllib(name)
    assert env_id == f"rlscale:{name}"
    assert register_with_rllib(name) == env_id  # idempotent

    creator = pickle.loads(pickle.dumps(_global_registry.get(ENV_CREATOR, env_id)))
    env = creator({})
    try:
        env.reset(seed=0)
        assert isinstance(env, MultiAgentEnv) == name.startswith("pettingzoo:")
    finally:
        env.close()


def test_register_with_rllib_rejects_unknown_names():
    with pytest.raises(UnknownEnvironmentError, match="CartPole-v1"):
        register_with_rllib("CartPol-v1")


# --- layering --------------------------------------------------------------------------------


def test_importing_rlscale_envs_stays_cheap_and_below_the_platform():
    code = (
        "import sys, rlscale.envs; "
        "heavy = {'ray', 'pettingzoo', 'mpe2', 'torch', 'rlscale.platform', 'rlscale.algorithms',"
        " 'rlscale.cli'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_an_unknown_family_is_an_error_that_lists_the_known_ones():
    assert {listing.family for listing in list_envs(False, family="mujoco")} == {"mujoco"}
    with pytest.raises(UnknownEnvironmentError, match=r"'mujoc'. Did you mean: mujoco\?"):
        list_envs(False, family="mujoc")
    with pytest.raises(UnknownEnvironmentError, match="Known: .*classic_control"):
        list_envs(False, family="nope")


@pytest.mark.parametrize("env_id", [point_mass.ENV_ID, lane_keeping.ENV_ID])
def test_rlscales_own_tasks_pass_gymnasiums_checker_and_are_listed_as_its_own(env_id):
    check_env(gym.make(env_id).unwrapped)
    listed = [listing.name for listing in list_envs(include_spaces=False, family="rlscale")]
    assert env_id in listed
