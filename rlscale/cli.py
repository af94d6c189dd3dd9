"""The ``rlscale`` command: a thin layer over ``rlscale.train`` and ``rlscale.evaluate``.

Results a script reads go to stdout (the final checkpoint's path as the last line of ``train``;
one JSON object as the last line of ``evaluate --json``); progress and messages go to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rlscale.errors import RlscaleError

# Help texts are plain text: Rich markup would eat bracketed text such as "[default: runs]".
app = typer.Typer(
    name="rlscale",
    rich_markup_mode=None,
    help="Distributed reinforcement learning and offline RL on Ray RLlib.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _print_version(requested: bool) -> None:
    if requested:
        from rlscale import __version__

        out.print(f"rlscale {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print rlscale's version and exit.",
        ),
    ] = False,
) -> None:
    """Distributed reinforcement learning and offline RL on Ray RLlib."""


ADDRESS_HELP = "Ray cluster address (HOST:PORT); default RAY_ADDRESS, else an embedded local Ray."
VERBOSE_HELP = (
    "Also show Ray's own log lines and warnings here (they are always kept in the run folder's "
    "ray.log)."
)


@app.command()
def train(
    algo: Annotated[Optional[str], typer.Argument(help="Algorithm (see `rlscale algos`).")] = None,
    env: Annotated[
        Optional[str], typer.Option("--env", help="Environment (see `rlscale envs`).")
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="YAML experiment spec.")
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="Run folder name.")] = None,
    output: Annotated[
        Optional[Path], typer.Option(help="Root folder for runs [default: runs].")
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    dataset: Annotated[
        Optional[str],
        typer.Option(
            help="Minari dataset id or folder to train from (offline algorithms: bc, cql, ...; "
            "pets and sysid fit their model from it)."
        ),
    ] = None,
    expert: Annotated[
        Optional[str],
        typer.Option(
            help="Expert for algorithms that query one (dagger): a scripted policy's name "
            "(cartpole_balance, pendulum_swing_up, ...) or a checkpoint folder."
        ),
    ] = None,
    stop_reward: Annotated[Optional[float], typer.Option(help="Stop at this mean return.")] = None,
    stop_iters: Annotated[Optional[int], typer.Option(help="Stop after N iterations.")] = None,
    stop_timesteps: Annotated[Optional[int], typer.Option(help="Stop after N env steps.")] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            help="key=value: a hyper-parameter (lr=0.001) or a spec field "
            "(resources.num_env_runners=2). Repeatable.",
        ),
    ] = None,
    address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None,
    dashboard: Annotated[
        bool, typer.Option(help="Start Ray's dashboard on 127.0.0.1 (embedded Ray only).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)] = False,
    resume: Annotated[
        Optional[Path],
        typer.Option(
            help="Continue this run folder from its latest complete checkpoint, to its stop "
            "rules or to the --stop-* given here."
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="If --name's folder holds a run, move it aside (to NAME.replaced-TIME) first.",
        ),
    ] = False,
) -> None:
    """Train until a stop rule holds; print the final checkpoint's path last."""
    from rlscale.algorithms.registry import get_algorithm
    from rlscale.platform.spec import deep_merge, load_spec, parse_assignments

    stop = {"reward": stop_reward, "iterations": stop_iters, "timesteps": stop_timesteps}
    if resume is not None:
        _refuse_with_resume(
            algorithm=algo, env=env, config=config, name=name, output=output, seed=seed,
            dataset=dataset, expert=expert, set=set_, overwrite=overwrite,
        )  # fmt: skip
        from rlscale.platform.runner import resume as resume_training

        result = resume_training(
            resume, stop=stop, address=address, console=err, dashboard=dashboard, verbose=verbose
        )
        _report_training(result)
        return
    overrides = _flag_overrides(
        algorithm=algo,
        env=env,
        name=name,
        output=str(output) if output else None,
        seed=seed,
        dataset=dataset,
        expert=expert,
        stop=stop,
    )
    spec = load_spec(config, deep_merge(parse_assignments(set_ or []), overrides))
    get_algorithm(spec.algorithm)  # an unknown name fails here, before RLlib is imported
    from rlscale.platform.runner import train as run_training

    result = run_training(
        spec,
        address=address,
        console=err,
        dashboard=dashboard,
        verbose=verbose,
        overwrite=overwrite,
    )
    _report_training(result)


def _refuse_with_resume(**given: Any) -> None:
    """--resume continues a run as it was specified: only its stop rules may change."""
    from rlscale.errors import SpecError

    clashing = [f"--{key}" if key != "algorithm" else "ALGO" for key, v in given.items() if v]
    if clashing:
        raise SpecError(
            f"{' and '.join(clashing)} cannot be combined with --resume, which continues the "
            "run as its spec.yaml describes (only --stop-* may change). Drop them, or start a "
            "new run without --resume."
        )


def _report_training(result) -> None:
    final = result.final
    if final is not None:
        mean = f"{final.return_mean:.1f}" if final.has_return else "n/a (no episode finished)"
        err.print(
            f"{final.iteration} iterations, {final.env_steps:,} env steps, {result.wall_s:.0f}s; "
            f"mean return over the last 100 episodes: {mean}",
            highlight=False,
        )
    if result.env_runner_restarts:
        err.print(
            f"EnvRunner restarts: {result.env_runner_restarts} (failed workers replaced by RLlib; "
            f"see {result.ray_log})",
            highlight=False,
            markup=False,
        )
    err.print(f"run folder:      {result.run_dir}", highlight=False)
    err.print(f"learning curve:  {result.learning_curve}", highlight=False)
    err.print("final checkpoint:", highlight=False)
    print(result.checkpoint, flush=True)
    if result.interrupted:
        raise typer.Exit(130)


@app.command()
def evaluate(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint folder printed by `rlscale train`.")
    ],
    episodes: Annotated[int, typer.Option(help="Greedy episodes to run.")] = 10,
    json_: Annotated[
        bool, typer.Option("--json", help="Print one JSON object as the last line.")
    ] = False,
    video: Annotated[Optional[Path], typer.Option(help="Record an mp4 per episode here.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for the evaluation episodes.")] = None,
    address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)] = False,
) -> None:
    """Restore a checkpoint and report the mean and spread of greedy returns."""
    from rlscale.platform.evaluation import evaluate as run_evaluation

    result = run_evaluation(
        checkpoint,
        episodes=episodes,
        video_dir=video,
        address=address,
        seed=seed,
        verbose=verbose,
    )
    err.print(
        f"{result.episodes} greedy episodes: mean return {result.mean_return:.2f} "
        f"± {result.std_return:.2f} (min {min(result.returns):.1f}, "
        f"max {max(result.returns):.1f})",
        highlight=False,
    )
    if result.policy_text:
        err.print("greedy policy:", highlight=False)
        err.print(result.policy_text, highlight=False, markup=False)
    if result.video_dir is not None:
        err.print(
            f"videos: {len(result.videos)} mp4 file(s) in {result.video_dir}", highlight=False
        )
    if json_:
        print(json.dumps(result.to_dict()), flush=True)
    else:
        print(
            f"mean_return={result.mean_return:.4f} std_return={result.std_return:.4f} "
            f"episodes={result.episodes}",
            flush=True,
        )


@app.command()
def envs(
    family: Annotated[
        Optional[str],
        typer.Option(help="Only this family, e.g. classic_control, toy_text, mujoco, pettingzoo."),
    ] = None,
) -> None:
    """List the environments rlscale can train on, with their spaces."""
    from rlscale.envs import list_envs

    table = _table("name", "kind", "observation space", "action space", "note")
    for listing in list_envs(family=family):
        table.add_row(*_listing_row(listing))
    out.print(table)


def _table(*headers: str) -> Table:
    """A table whose long cells wrap instead of being cut to "…" (ids, parameters and paths
    must survive a narrow terminal, or a log file, whole)."""
    table = Table()
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def _listing_row(listing: Any) -> list[str]:
    def text(attribute: str) -> str:
        value = getattr(listing, attribute, None)
        return "" if value is None else escape(str(value))  # e.g. "gymnasium[box2d]"

    return [
        text("name"),
        text("kind"),
        text("observation_space"),
        text("action_space"),
        text("note"),
    ]


@app.command()
def algos() -> None:
    """List the registered algorithms, one line each."""
    from rlscale.algorithms import list_algorithms

    for entry in list_algorithms():
        print(f"{entry.name:<12} {entry.family:<16} {entry.summary}")


@app.command()
def tune(
    file: Annotated[Path, typer.Argument(help="Sweep file: a spec plus a `tune:` section.")],
    address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the experiment DIR/NAME after its driver was killed.")
    ] = False,
    name: Annotated[
        Optional[str], typer.Option(help="Experiment folder name [default: <file>-<time>].")
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option(help="Root folder [default: the spec's output, runs].")
    ] = None,
) -> None:
    """Run a Ray Tune sweep; print the ranked trials, the best spec and checkpoint last."""
    from rlscale.platform.tuning.progress import short_value
    from rlscale.platform.tuning.run import tune as run_sweep

    result = run_sweep(file, name=name, output=output, resume=resume, address=address, console=err)
    table = _table("rank", "trial", "status", result.metric, "iter", "env steps", "params")
    for rank, trial in enumerate(result.trials, start=1):
        metric = "n/a" if trial.metric is None else f"{trial.metric:.4g}"
        params = " ".join(f"{k}={short_value(v)}" for k, v in trial.params.items())
        table.add_row(
            str(rank),
            escape(trial.trial_id),
            trial.status,
            metric,
            str(trial.iterations),
            f"{trial.env_steps:,}",
            escape(params),
        )
    err.print(table)
    err.print(f"experiment folder: {result.experiment_dir}", highlight=False)
    if result.curves_path:
        err.print(f"learning curves:   {result.curves_path}", highlight=False)
    best = result.best
    if best is None:
        raise RlscaleError(f"no trial reported a finite {result.metric}; see the trial folders.")
    err.print(
        f"best spec:         {result.best_spec_path}  (rlscale train --config ...)", highlight=False
    )
    err.print("best checkpoint:", highlight=False)
    print(best.checkpoint, flush=True)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    address: Annotated[
        str, typer.Option(help="The head's dashboard / Jobs API, e.g. http://HEAD:8265.")
    ],
    working_dir: Annotated[
        Optional[Path], typer.Option(help="Folder uploaded to the cluster as the job's cwd.")
    ] = None,
    token: Annotated[
        Optional[str],
        typer.Option(help="Cluster token (default: RAY_AUTH_TOKEN, else ~/.ray/auth_token)."),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Stream logs and wait for the job's end.")] = True,
) -> None:
    """Submit `-- COMMAND ...` as a Ray job; stream its logs, exit with its status."""
    from rlscale.platform.cluster.jobs import submit as submit_job

    command = list(ctx.args)
    result = submit_job(address, command, working_dir=working_dir, token=token, wait=wait)
    if not wait:
        err.print(f"submitted job {result.job_id}", highlight=False)
        print(result.job_id, flush=True)
        return
    err.print(
        f"job {result.job_id}: {result.status}"
        + (f" ({result.message})" if result.message and not result.succeeded else ""),
        highlight=False,
    )
    if not result.succeeded:
        raise typer.Exit(1)


@app.command()
def cluster(
    action: Annotated[str, typer.Argument(help="up | down | status")],
    config: Annotated[
        str, typer.Argument(help="A `ray up` YAML, or a shipped example: aws, gcp, local.")
    ],
) -> None:
    """Launch, tear down or inspect a Ray cluster with Ray's cluster launcher."""
    from rlscale.platform.cluster.launcher import run_launcher

    code = run_launcher(action, config)
    if code:
        raise typer.Exit(code)


datasets_app = typer.Typer(
    rich_markup_mode=None,
    help="Minari datasets: collect, combine, list, info, validate, download.",
    no_args_is_help=True,
)
app.add_typer(datasets_app, name="datasets")
ROOT_HELP = "Datasets folder [default: MINARI_DATASETS_PATH, else ~/.minari/datasets]."


@datasets_app.command("collect")
def datasets_collect(
    env: Annotated[str, typer.Option("--env", help="Environment (see `rlscale envs`).")],
    policy: Annotated[
        str, typer.Option(help="Checkpoint folder, 'random', or a scripted policy name.")
    ],
    episodes: Annotated[int, typer.Option(help="Episodes to collect.")],
    name: Annotated[str, typer.Option(help="Dataset id, NAMESPACE/NAME-vN.")],
    workers: Annotated[int, typer.Option(help="Ray actors rolling out in parallel.")] = 1,
    noise: Annotated[
        float, typer.Option(help="ε for discrete actions; Gaussian std (× half range) for Box.")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Episode i uses seed SEED + i.")] = 0,
    root: Annotated[Optional[Path], typer.Option(help=ROOT_HELP)] = None,
    address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None,
) -> None:
    """Roll a policy out on Ray actors and write one Minari dataset (atomically)."""
    from rlscale.platform.datasets_api import collect_dataset

    result = collect_dataset(
        env=env,
        policy=policy,
        episodes=episodes,
        dataset_id=name,
        workers=workers,
        noise=noise,
        seed=seed,
        root=root,
        address=address,
    )
    err.print(
        f"{result.write.episodes} episodes, {result.write.steps:,} steps; mean return "
        f"{result.mean_return:.2f} (random policy: {result.random_return:.2f})",
        highlight=False,
    )
    print(result.write.data_dir.parent, flush=True)


@datasets_app.command("combine")
def datasets_combine(
    sources: Annotated[list[str], typer.Argument(help="Dataset ids or folders to combine.")],
    name: Annotated[str, typer.Option(help="Id of the combined dataset, NAMESPACE/NAME-vN.")],
    root: Annotated[Optional[Path], typer.Option(help=ROOT_HELP)] = None,
) -> None:
    """Combine datasets of one environment into one mixed dataset."""
    from rlscale.platform.datasets_api import combine_datasets

    written = combine_datasets(sources, name, root=root)
    err.print(f"{written.episodes} episodes, {written.steps:,} steps", highlight=False)
    print(written.data_dir.parent, flush=True)


@datasets_app.command("list")
def datasets_list(root: Annotated[Optional[Path], typer.Option(help=ROOT_HELP)] = None) -> None:
    """List the local datasets, whoever wrote them."""
    from rlscale.platform.datasets_api import UnreadableDataset, datasets_root, list_datasets

    table = _table("dataset", "env", "episodes", "steps", "size MB", "note")
    for entry in list_datasets(root):
        if isinstance(entry, UnreadableDataset):
            table.add_row(
                escape(entry.dataset_id), "", "", "", "", escape(f"unreadable: {entry.problem}")
            )
        else:
            table.add_row(
                escape(entry.dataset_id),
                escape(entry.env or ""),
                str(entry.episodes),
                f"{entry.steps:,}",
                f"{entry.size_mb:g}",
                "",
            )
    err.print(f"datasets under {datasets_root(root)}:", highlight=False)
    out.print(table)


@datasets_app.command("info")
def datasets_info(
    dataset: Annotated[str, typer.Argument(help="Dataset id or folder.")],
    root: Annotated[Optional[Path], typer.Option(help=ROOT_HELP)] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show a dataset's size, spaces, env, reference returns and provenance."""
    from rlscale.platform.datasets_api import dataset_info

    summary = dataset_info(dataset, root).to_dict()
    if json_:
        print(json.dumps(summary), flush=True)
        return
    for key, value in summary.items():
        print(f"{key + ':':<19} {value}")


@datasets_app.command("validate")
def datasets_validate(
    dataset: Annotated[str, typer.Argument(help="Dataset id or folder.")],
    env: Annotated[
        Optional[str], typer.Option("--env", help="Also check the spaces match this env.")
    ] = None,
    root: Annotated[Optional[Path], typer.Option(help=ROOT_HELP)] = None,
) -> None:
    """Check dtypes, shapes, NaN/inf and episode boundaries; list every problem found."""
    from rlscale.platform.datasets_api import validate_dataset

    report = validate_dataset(dataset, root, env=env)
    if report.ok:
        print(f"ok: {report.episodes} episodes, {report.steps:,} steps, no problems found")
        return
    against = f", checked against {env}" if env else ""
    err.print(
        f"{len(report.problems)} problem(s) in {dataset} ({report.episodes} episodes{against}):",
        highlight=False,
        markup=False,
    )
    for problem in report.problems:
        err.print(f"  - {problem}", highlight=False, markup=False)
    fix = "Collect the dataset again with `rlscale datasets collect`, or fix its source"
    if env:
        fix += "; or validate it against the env it was collected on (`rlscale datasets info`)"
    fix += "."
    err.print(fix, highlight=False, markup=False)
    raise typer.Exit(1)


@datasets_app.command("download")
def datasets_download(
    dataset: Annotated[str, typer.Argument(help="Remote Minari dataset id.")],
) -> None:
    """Fetch a remote Minari dataset with Minari's own download (needs a network)."""
    from rlscale.platform.datasets_api import download_dataset

    print(download_dataset(dataset), flush=True)


def _flag_overrides(**flags: Any) -> dict[str, Any]:
    """Only the flags actually given, so they override the file and nothing else."""
    overrides: dict[str, Any] = {}
    for key, value in flags.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
            if value:
                overrides[key] = value
        elif value is not None:
            overrides[key] = value
    return overrides


def main() -> None:
    """Console-script entry point: user errors print one message, never a traceback.

    Typer handles usage errors (unknown option, missing argument) itself and exits 2.
    """
    try:
        app()
    except RlscaleError as exc:
        # The message quotes the user's input, which may hold rich markup ("[/x]").
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
