"""Cluster configs, `rlscale cluster`, and `rlscale submit` against a real token-auth head."""

from __future__ import annotations

import pytest
import yaml

from rlscale.errors import RayConnectionError
from rlscale.platform.cluster.jobs import dashboard_url, find_token
from rlscale.platform.cluster.launcher import (
    CONFIG_DIR,
    ClusterConfigError,
    config_problems,
    load_cluster_config,
    shipped_configs,
)
from tests.conftest import run_cli
from tests.ray_head import clean_env, free_port, start_head
from tests.test_cli import assert_clean_failure

KUBERAY = sorted((CONFIG_DIR / "kuberay").glob("*.yaml"))


def test_shipped_configs_are_safe_to_launch():
    names = {path.stem for path in shipped_configs()}
    assert {"aws", "gcp", "local"} <= names
    for path in shipped_configs():
        data = load_cluster_config(path)
        assert config_problems(data) == []


def test_cloud_configs_have_cpu_rollout_and_gpu_learner_nodes():
    for name in ("aws", "gcp"):
        node_types = load_cluster_config(name)["available_node_types"]
        assert {"head", "cpu_rollout", "gpu_learner"} <= set(node_types)


def test_config_that_turns_auth_off_or_exposes_the_dashboard_is_refused(tmp_path):
    data = yaml.safe_load((CONFIG_DIR / "local.yaml").read_text())
    data["head_start_ray_commands"] = ["ray start --head --dashboard-host=0.0.0.0"]
    data["worker_start_ray_commands"] = ["RAY_AUTH_MODE=disabled ray start --address=x:6379"]
    path = tmp_path / "unsafe.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ClusterConfigError) as caught:
        load_cluster_config(path)
    message = str(caught.value)
    assert "without token authentication" in message and "0.0.0.0" in message
    assert message.count("without token authentication") == 2


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_manifests_keep_auth_on_and_the_head_internal(path):
    (manifest,) = list(yaml.safe_load_all(path.read_text()))
    assert manifest["apiVersion"] == "ray.io/v1"
    cluster = manifest["spec"] if manifest["kind"] == "RayCluster" else manifest["spec"][
        "rayClusterSpec"]
    assert cluster["headGroupSpec"]["serviceType"] == "ClusterIP"
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    containers = [c for g in groups for c in g["template"]["spec"]["containers"]]
    if manifest["kind"] == "RayJob":
        containers += manifest["spec"]["submitterPodTemplate"]["spec"]["containers"]
        assert manifest["spec"]["entrypoint"].startswith("rlscale ")
    for container in containers:
        env = {item["name"]: item for item in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
        assert container["image"].startswith("rlscale:")
    assert (CONFIG_DIR / "kuberay" / "Dockerfile").read_text().count("pip install") == 1


def test_cluster_command_with_a_missing_config(tmp_path):
    result = run_cli("cluster", "up", str(tmp_path / "nope.yaml"))
    assert_clean_failure(result, "does not exist", "aws, gcp, local")


def test_cluster_command_with_an_invalid_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("cluster_name: x\nprovider: {type: moon}\n")
    result = run_cli("cluster", "status", str(path))
    assert_clean_failure(result, "unknown provider type 'moon'", "head_start_ray_commands")


def test_dashboard_url_forms():
    assert dashboard_url("http://10.0.0.1:8265") == "http://10.0.0.1:8265"
    assert dashboard_url("10.0.0.1") == "http://10.0.0.1:8265"
    with pytest.raises(RayConnectionError, match="not a Ray dashboard address"):
        dashboard_url("ray://10.0.0.1:10001")


def test_token_lookup_order(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert find_token() == "from-file"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert find_token() == "from-env"
    assert find_token("explicit") == "explicit"


def test_submit_to_an_unreachable_address():
    port = free_port()
    result = run_cli("submit", "--address", f"http://127.0.0.1:{port}", "--", "echo", "hi",
                     timeout=60)
    assert_clean_failure(result, f"cannot reach a Ray cluster at 127.0.0.1:{port}")


def test_submit_without_a_command():
    result = run_cli("submit", "--address", "http://127.0.0.1:1")
    assert_clean_failure(result, "no command to run")


@pytest.mark.slow
def test_submit_a_training_job_to_a_token_authenticated_head(tmp_path):
    """A real `ray start --head` with token auth: the job runs, bad tokens are refused."""
    home = tmp_path / "home"  # no ~/.ray/auth_token: the token must travel with the client
    home.mkdir()
    head = start_head(num_cpus=1, home=home)
    try:
        client_env = clean_env(HOME=str(home))
        runs = tmp_path / "runs"
        result = run_cli(
            "submit", "--address", head.dashboard_url, "--token", head.token, "--",
            "rlscale", "train", "q_learning", "--env", "FrozenLake-v1", "--stop-iters", "2",
            "--output", str(runs), "--name", "job1",
            env=client_env, timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "SUCCEEDED" in result.stderr
        assert "final checkpoint" in result.stdout  # the job's own logs, streamed
        assert (runs / "job1" / "checkpoint_final" / "rlscale.json").is_file()

        failing = run_cli("submit", "--address", head.dashboard_url, "--token", head.token,
                          "--", "python", "-c", "raise SystemExit(3)", env=client_env)
        assert failing.returncode == 1 and "FAILED" in failing.stderr

        wrong = run_cli("submit", "--address", head.dashboard_url, "--token", "not-the-token",
                        "--", "echo", "hi", env=client_env)
        assert_clean_failure(wrong, "rejected the token")
        missing = run_cli("submit", "--address", head.dashboard_url, "--", "echo", "hi",
                          env=client_env)
        assert_clean_failure(missing, "requires a token and none was given")
    finally:
        head.stop()
    assert head.process.poll() is not None

