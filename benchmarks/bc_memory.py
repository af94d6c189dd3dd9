"""Peak memory of a BC run on a logged dataset against the dataset's size on disk.

    .venv/bin/python benchmarks/bc_memory.py --dataset hopper/ppo-1m-v0 --env Hopper-v5 \
        [--root DIR] [--iterations 20]

Runs ``rlscale train bc`` as a child process (it starts its own embedded Ray) and samples, every
0.2 s, the memory of that process and of every process under it: the Ray head, the Ray Data
workers that read the HDF5 shards, the Learner. Reports the peak of the summed PSS (each page
shared between processes counted once, split among them, which includes Ray's shared-memory
object store), how that peak splits by process, and the peak RSS of the training process
alone. Linux only (reads /proc).

Writes benchmarks/results/bc_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "bc_memory.json"
REPO = Path(__file__).resolve().parents[1]
SAMPLE_EVERY_S = 0.2


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children(current)
    return tree


def memory_kib(pid: int, field: str) -> int:
    """One ``field`` ('Pss:' from smaps_rollup, 'VmRSS:' from status) of a process, in KiB."""
    source = "smaps_rollup" if field == "Pss:" else "status"
    try:
        for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass  # the process ended between listing and reading
    return 0


def process_name(pid: int) -> str:
    """What a process is: a Ray worker's task or actor name (``ray::...``), else its program."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    first = argv[0].decode(errors="replace")
    return first.split()[0] if first.startswith("ray::") else Path(first).name


def size_on_disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="Minari id or dataset folder")
    parser.add_argument("--env", required=True)
    parser.add_argument("--root", type=Path, help="datasets root (default MINARI_DATASETS_PATH)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from rlscale.datasets.store import resolve_dataset
    from rlscale.errors import DatasetError

    try:
        folder = resolve_dataset(args.dataset, args.root).parent  # the dataset, not its data/
    except DatasetError as error:
        parser.error(str(error))
    command = [
        str(Path(sys.executable).parent / "rlscale"), "train", "bc",
        "--env", args.env, "--dataset", args.dataset, "--stop-iters", str(args.iterations),
        "--seed", "0", "--output", "/tmp/rlscale-bc-memory",
    ]
    env = dict(os.environ)
    if args.root is not None:
        env["MINARI_DATASETS_PATH"] = str(args.root)

    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=REPO)
    peak_pss_kib = peak_driver_rss_kib = 0
    breakdown_at_peak: dict[str, int] = {}
    while child.poll() is None:
        by_process = {pid: memory_kib(pid, "Pss:") for pid in process_tree(child.pid)}
        if sum(by_process.values()) > peak_pss_kib:
            peak_pss_kib = sum(by_process.values())
            breakdown_at_peak = {}
            for pid, kib in by_process.items():
                name = process_name(pid)
                breakdown_at_peak[name] = breakdown_at_peak.get(name, 0) + kib
        peak_driver_rss_kib = max(peak_driver_rss_kib, memory_kib(child.pid, "VmRSS:"))
        time.sleep(SAMPLE_EVERY_S)
    wall_s = time.perf_counter() - started
    if child.returncode != 0:
        sys.exit(f"rlscale train bc exited with {child.returncode}")

    disk_bytes = size_on_disk(folder)
    result = {
        "benchmark": "bc_memory",
        "dataset": str(folder),
        "env": args.env,
        "iterations": args.iterations,
        "command": " ".join(command),
        "dataset_bytes_on_disk": disk_bytes,
        "peak_tree_pss_bytes": peak_pss_kib * 1024,
        "peak_driver_rss_bytes": peak_driver_rss_kib * 1024,
        "pss_bytes_at_peak_by_process": {
            name: kib * 1024 for name, kib in sorted(breakdown_at_peak.items())
        },
        "wall_s": round(wall_s, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    mib = 1024 * 1024
    print(f"\ndataset on disk:               {disk_bytes / mib:,.0f} MiB ({folder})")
    print(f"peak PSS, whole process tree:  {peak_pss_kib / 1024:,.0f} MiB")
    print(f"peak RSS, training process:    {peak_driver_rss_kib / 1024:,.0f} MiB")
    print(f"wall time:                     {wall_s:.0f} s")
    print("PSS at the peak, by process:")
    for name, kib in sorted(breakdown_at_peak.items(), key=lambda item: -item[1]):
        print(f"  {kib / 1024:>8,.0f} MiB  {name}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
