"""How fast torchdeck lists a folder of runs: the goal is 1,000 run directories in under a second.

Generates ``--runs`` run directories in a temporary folder, each as a run writes it: config.toml
from ``RunConfig.to_toml`` and an events.jsonl of ``--epochs`` epochs, each with ``--batches``
batch events before its epoch event, checkpoint events, and an end (finished mostly; every
tenth stopped, every twentieth failed). No checkpoints: listing never reads them. Then times,
as the median of ``--repeats``, ``engine.store.runs.list_runs`` in this process and
``torchdeck runs --json`` end to end in a fresh process (startup and printing included).

    python bench/runs_listing.py [--runs 1000] [--epochs 20] [--batches 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.timing import median_seconds  # noqa: E402
from engine.config import RunConfig  # noqa: E402
from engine.store.runs import list_runs  # noqa: E402


def write_run(folder: Path, number: int, epochs: int, batches: int, rng: random.Random) -> None:
    """One run directory as a tiny classifier's run leaves it."""
    name = f"iris-mlp-{number:05d}"
    run_dir = folder / name
    run_dir.mkdir()
    config = RunConfig.for_task("iris", out=str(folder), name=name, epochs=epochs, lr=rng.choice((1e-3, 1e-2, 5e-2)))
    (run_dir / "config.toml").write_text(config.to_toml())
    start = 1.7e9 + number * 60
    lines = [{"event": "run_started", "time": start, "run_dir": str(run_dir), "config": config.to_dict(),
              "device": "cpu", "device_name": "cpu", "parameters": 243,
              "sizes": {"train": 105, "val": 15, "test": 30}, "epochs": epochs, "batches": batches,
              "pid": 1, "host": "elsewhere"}]
    clock, best = start, 0.0
    for epoch in range(1, epochs + 1):
        for batch in range(1, batches + 1):
            clock += 0.1
            lines.append({"event": "batch", "time": clock, "epoch": epoch, "epochs": epochs, "batch": batch,
                          "batches": batches, "step": (epoch - 1) * batches + batch, "loss": rng.random(),
                          "samples_per_s": 5000.0, "eta_s": 1.0})
        accuracy = rng.random()
        improved, best = accuracy > best, max(best, accuracy)
        lines.append({"event": "epoch", "time": clock, "epoch": epoch, "epochs": epochs,
                      "train_loss": rng.random(), "val_loss": rng.random(), "metrics": {"accuracy": accuracy},
                      "lr": 0.01, "seconds": 1.0, "samples": 105, "improved": improved})
        lines.append({"event": "checkpoint", "time": clock, "path": str(run_dir / "last.pt"), "kind": "last",
                      "epoch": epoch})
    if number % 20 == 0:
        lines.append({"event": "run_failed", "time": clock, "run_dir": str(run_dir), "message": "diverged"})
    elif number % 10 == 0:
        lines.append({"event": "run_stopped", "time": clock, "run_dir": str(run_dir), "reason": "ctrl+c",
                      "epoch": epochs, "batch": 0, "checkpoint": str(run_dir / "last.pt"), "resume_command": ""})
    else:
        lines.append({"event": "run_finished", "time": clock, "run_dir": str(run_dir), "reason": "completed",
                      "epochs_done": epochs, "best": {"epoch": 1, "monitor": "accuracy", "value": best,
                                                      "val_loss": 0.5},
                      "test": {"loss": 0.4, "accuracy": 0.9}, "seconds": float(epochs)})
    (run_dir / "events.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as folder:
        for number in range(args.runs):
            write_run(Path(folder), number, args.epochs, args.batches, rng)
        size = sum(path.stat().st_size for path in Path(folder).rglob("*"))
        print(f"{args.runs} run directories, {args.epochs} epochs × {args.batches} batch events each, "
              f"{size / 1e6:.1f} MB")
        found = list_runs(folder)
        assert len(found) == args.runs, len(found)
        listing = median_seconds(lambda: list_runs(folder), args.repeats)
        command = [sys.executable, "-m", "cli", "runs", folder, "--json"]
        cli = median_seconds(lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL), args.repeats)
        print(f"list_runs             {listing:.3f} s  ({listing / args.runs * 1e3:.2f} ms per run)")
        print(f"torchdeck runs --json {cli:.3f} s  (a fresh process: startup and JSON included)")


if __name__ == "__main__":
    main()
