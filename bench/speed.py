"""torchdeck's speed table: `torchdeck train` against the loops a user writes by hand, as processes.

    python bench/speed.py [--repeats 5] [--mnist-epochs 3] [--data-dir DIR] [--quick]

Every figure is a child process, started as a user starts it, the kinds alternated and their
order rotated each repeat; medians, with the spread (min-max) of the repeats. torchdeck runs
`torchdeck train` in its three output modes (JSON lines into a pipe, plain lines into a pipe, and
the Rich bars on a terminal: a pseudo-terminal here) and its figures come from the run's own
events.jsonl; the other loops are bench/loops.py's scripts. Rates are training samples per
second over the batches alone (validation excluded), from the same clock in both. Prints the
table in Markdown (README's Speed section is its output), then where a run's start-up goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pty
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOOPS = [sys.executable, str(REPO / "bench" / "loops.py")]
TORCHDECK = [sys.executable, "-m", "cli"]
GOALS = {"rate": 0.95, "iris": 1.10, "first_batch": 1.20}


def run_torchdeck(args: list[str], out: Path, mode: str) -> dict:
    """One `torchdeck train` process in ``mode`` (json, piped, terminal); its figures from events.jsonl."""
    name = f"run-{time.time_ns()}"
    command = [*TORCHDECK, "train", *args, "--out", str(out), "--name", name] + (["--json"] if mode == "json" else [])
    start = time.time()
    if mode == "terminal":
        leader, follower = pty.openpty()
        child = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, cwd=REPO)
        os.close(follower)
        while True:  # read everything it draws, as a terminal would
            try:
                if not os.read(leader, 65536):
                    break
            except OSError:
                break
        os.close(leader)
        child.wait()
    else:
        child = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    end = time.time()
    if child.returncode:
        raise SystemExit(f"torchdeck failed ({child.returncode}): {' '.join(command)}")
    events = [json.loads(line) for line in (out / name / "events.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    started = next(e for e in events if e["event"] == "run_started")["time"]
    return dict(start=start, end=end, first_batch=next(e for e in events if e["event"] == "batch")["time"],
                batch_seconds=sum(e["seconds"] for e in epochs), samples=sum(e["samples"] for e in epochs),
                loop_seconds=epochs[-1]["time"] - started, epochs=len(epochs))


def run_loop(args: list[str]) -> dict:
    """One bench/loops.py process; its figures from the JSON line it prints last."""
    start = time.time()
    child = subprocess.run([*LOOPS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    end = time.time()
    if child.returncode:
        raise SystemExit(f"bench/loops.py {' '.join(args)} failed: {child.stderr.strip().splitlines()[-1:]}")
    return dict(start=start, end=end, **json.loads(child.stdout.strip().splitlines()[-1]))


def has_lightning() -> bool:
    return subprocess.run([sys.executable, "-c", "import lightning"], capture_output=True).returncode == 0


def alternate(kinds: dict, repeats: int) -> dict[str, list[dict]]:
    results = {name: [] for name in kinds}
    names = list(kinds)
    for repeat in range(repeats):
        turn = repeat % len(names)
        for name in names[turn:] + names[:turn]:
            results[name].append(kinds[name]())
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return results


def figures(runs: list[dict], what: str) -> list[float]:
    measures = {
        "rate": lambda r: r["samples"] / r["batch_seconds"],
        "first_batch": lambda r: r["first_batch"] - r["start"],
        "whole": lambda r: r["end"] - r["start"],
        "epoch_ms": lambda r: 1000 * r["loop_seconds"] / r["epochs"],
    }
    return [measures[what](run) for run in runs]


def cell(runs: list[dict], what: str) -> str:
    values = figures(runs, what)
    form = "{:,.0f}" if what == "rate" else "{:.2f} s" if what in ("first_batch", "whole") else "{:.2f}"
    spread = f" ({form.format(min(values))}–{form.format(max(values))})" if len(values) > 1 else ""
    return form.format(statistics.median(values)) + spread


def ratio(ours: list[dict], theirs: list[dict], what: str, goal: str | None = None) -> str:
    value = statistics.median(figures(ours, what)) / statistics.median(figures(theirs, what))
    if goal is None:
        return f"{value:.2f}"
    limit = GOALS[goal]
    met = value >= limit if goal == "rate" else value <= limit
    return f"{value:.2f} ({'≥' if goal == 'rate' else '≤'} {limit:.2f}: {'met' if met else 'NOT met'})"


def table(r: dict[str, list[dict]], epochs: int, lightning: bool) -> list[str]:
    hand, rows = r["hand"], []
    for mode in ("json", "piped", "terminal"):
        rows.append((f"MNIST train samples/s, torchdeck `{mode}` / hand loop (fused Adam)", cell(r[mode], "rate"),
                     cell(hand, "rate"), ratio(r[mode], hand, "rate", "rate")))
    rows += [
        ("MNIST train samples/s, torchdeck `json` / hand loop with Adam's defaults", cell(r["json"], "rate"),
         cell(r["hand_default"], "rate"), ratio(r["json"], r["hand_default"], "rate")),
        ("MNIST, the hand loop in a worker thread / in the main thread", cell(r["hand_thread"], "rate"),
         cell(hand, "rate"), ratio(r["hand_thread"], hand, "rate")),
        ("MNIST, torchdeck `json` / the tutorial's DataLoader loop (PIL + ToTensor per sample)",
         cell(r["json"], "rate"), cell(r["seeds"], "rate"), ratio(r["json"], r["seeds"], "rate")),
    ]
    if lightning:
        rows.append(("MNIST, torchdeck `json` / PyTorch Lightning (no bar, logger or checkpoints)",
                     cell(r["json"], "rate"), cell(r["lightning"], "rate"), ratio(r["json"], r["lightning"], "rate")))
    rows += [
        (f"MNIST whole process, start to exit ({epochs} epochs)", cell(r["json"], "whole"), cell(hand, "whole"),
         ratio(r["json"], hand, "whole")),
        ("MNIST start to first batch (hand: imports + data + setup)", cell(r["json"], "first_batch"),
         cell(hand, "first_batch"), ratio(r["json"], hand, "first_batch", "first_batch")),
        ("Iris preset, ms per epoch incl. validation (100 epochs)", cell(r["iris"], "epoch_ms"),
         cell(r["hand_iris"], "epoch_ms"), ratio(r["iris"], r["hand_iris"], "epoch_ms", "iris")),
    ]
    lines = ["| measure | torchdeck (or the first) | hand-written (or the second) | ratio |", "|---|---|---|---|"]
    return lines + [f"| {' | '.join(row)} |" for row in rows]


def start_up(data_dir: str, out: Path) -> list[str]:
    """The costliest imports of `torchdeck train` (cumulative), from python -X importtime."""
    child = subprocess.run([sys.executable, "-X", "importtime", "-m", "cli", "train", "--task", "mnist", "--data-dir",
                            data_dir, "--epochs", "1", "--out", str(out), "--json"], capture_output=True, text=True,
                           cwd=REPO)
    rows = []
    for line in child.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit():
                rows.append((int(cumulative), name.rstrip()))
    top = [row for row in sorted(rows, reverse=True) if len(row[1]) - len(row[1].lstrip()) <= 10][:14]
    return [f"  {micro / 1e6:5.2f} s {name}" for micro, name in top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mnist-epochs", type=int, default=3)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mnist-t10k"))
    parser.add_argument("--quick", action="store_true", help="one repeat of one epoch: does it all run?")
    args = parser.parse_args()
    repeats, epochs = (1, 1) if args.quick else (args.repeats, args.mnist_epochs)
    if not any(Path(args.data_dir).glob("t10k-images*")):
        raise SystemExit(f"no MNIST t10k files in {args.data_dir}: give --data-dir")
    lightning = has_lightning()
    mnist = ["--task", "mnist", "--data-dir", args.data_dir, "--epochs", str(epochs)]
    loop = ["--data-dir", args.data_dir, "--epochs", str(epochs)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        kinds = {mode: (lambda mode=mode: run_torchdeck(mnist, out, mode)) for mode in ("json", "piped", "terminal")}
        kinds |= {
            "hand": lambda: run_loop(["hand", *loop]),
            "hand_default": lambda: run_loop(["hand", "--default-adam", *loop]),
            "hand_thread": lambda: run_loop(["hand", "--thread", *loop]),
            "seeds": lambda: run_loop(["seeds", *loop]),
            "iris": lambda: run_torchdeck(["--task", "iris", "--json"], out, "piped"),
            "hand_iris": lambda: run_loop(["iris"]),
        }
        if lightning:
            kinds["lightning"] = lambda: run_loop(["lightning", *loop])
        results = alternate(kinds, repeats)
        import torch  # only for its version, after the children ran

        print(f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
              f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}; {repeats} repeats, medians "
              f"(min–max); MNIST: 7,999 real t10k images, {epochs} epochs; Lightning "
              f"{'included' if lightning else 'not installed'}\n")
        print("\n".join(table(results, epochs, lightning)))
        print("\n`torchdeck train --task mnist` start-up, the costliest imports (cumulative, python -X importtime):")
        print("\n".join(start_up(args.data_dir, out)))


if __name__ == "__main__":
    main()
