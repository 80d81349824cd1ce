"""How fast torchdeck's engine trains next to a hand-written PyTorch loop and the seeds' DataLoader loop.

One process, same data, same model, alternating and repeated; prints samples/s (median of the
repeats) and the ratios between the loops:

1. ``engine``: ``Run.new(RunConfig.for_task(...)).start()``, events consumed by the CLI's plain
   reporter (output discarded). Its rate is taken over the wall time from ``run_started`` to the
   last ``epoch`` event (training, per-epoch validation, and the checkpoints of every epoch but
   the last); the time spent in ``engine.store.checkpoint.save`` inside that window is measured by a
   wrapper and shown apart, as is the sum of the epoch events' ``seconds`` (batches only).
2. ``hand``: a plain PyTorch loop over the engine's own split tensors, batched by index, with the
   same model (``engine.train.models.build_model``), optimizer, scheduler, epochs and epoch-end validation;
   once with the engine's optimizer (fused Adam: the like-for-like comparison the goal uses),
   once with ``torch.optim.Adam``'s defaults, as a tutorial writes it, and once (the engine's
   optimizer) in a worker thread, where the engine trains: from a non-main thread the same loop
   pays for a second OpenMP team.
3. ``seeds``: the seeds' loop: a Dataset that turns each uint8 image into a PIL image and applies
   ``ToTensor()`` + ``Normalize((0.5,), (0.5,))`` per sample, through ``DataLoader(batch_size=64,
   shuffle=True)`` (MNIST only).

Workloads: the seed MNIST MLP on the real MNIST files (``--data-dir``, default
../shared/data/mnist-t10k beside the repository; generated data of the same shape when absent),
the seed Iris preset (engine and hand only), and optionally the tutorial ConvNet on a generated
image folder. Also: the engine with ``--amp`` and ``--compile`` on the MNIST MLP (first epoch, the
warm-up, excluded), ``torchdeck --help`` wall time, the time from ``torchdeck train`` to its first
batch event, the TUI dashboard against headless for the same run (bench/tui_vs_headless.py), and
this machine's GEMM throughput for the MNIST MLP step's shapes.

    python bench/compare_loops.py [--repeats 5] [--mnist-epochs 5] [--data-dir DIR] [--no-convnet]
                                  [--no-speed-options] [--no-tui]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import engine.store.checkpoint
import engine.train.run
from cli.report import PlainReporter
from engine.config import RunConfig
from engine.data.tasks import load_task
from engine.events import EpochEnded, RunFailed, RunFinished, RunStarted
from engine.train.models import build_model
from engine.train.optim import OPTIMIZERS
from engine.train.run import Run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tui_vs_headless import headless, on_dashboard  # noqa: E402  (a sibling script)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist-t10k"

# --- timing wrappers around the engine's checkpoint writes (this process only) -------------------

SPANS: dict[str, list[tuple[float, float]]] = {"save": [], "fsync": []}
_save, _fsync = engine.store.checkpoint.save, os.fsync


def _timed_save(*args, **kwargs):
    start = time.time()
    try:
        return _save(*args, **kwargs)
    finally:
        SPANS["save"].append((start, time.time()))


def _timed_fsync(fd):
    start = time.time()
    try:
        return _fsync(fd)
    finally:
        if threading.current_thread().name == "torchdeck-run":
            SPANS["fsync"].append((start, time.time()))


engine.store.checkpoint.save = _timed_save  # engine/train/checkpointer.py calls it through the module
os.fsync = _timed_fsync


def spent(kind: str, start: float, end: float) -> float:
    return sum(b - a for a, b in SPANS[kind] if a >= start and b <= end)


def median(values):
    return statistics.median(values)


# --- loop 1: the engine ---------------------------------------------------------------------------

def run_engine(config: RunConfig, time_loading: bool = False) -> dict:
    for spans in SPANS.values():
        spans.clear()
    run = Run.new(config)
    loading = [0.0]
    if time_loading:  # time spent waiting for the next batch of the folder's DataLoader
        split = run.data.splits["train"]
        batches = split.batches

        def timed(*args, **kwargs):
            iterator = batches(*args, **kwargs)
            while True:
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    loading[0] += time.perf_counter() - start
                    return
                loading[0] += time.perf_counter() - start
                yield item

        split.batches = timed
    run.start()
    reporter = PlainReporter(out=io.StringIO(), err=io.StringIO())
    started = last_epoch = finished = None
    epoch_seconds, samples, epochs = 0.0, 0, []
    for event in run.events:
        reporter(event)
        if isinstance(event, RunStarted):
            started = event.time
        elif isinstance(event, EpochEnded):
            last_epoch = event.time
            epoch_seconds += event.seconds
            samples += event.samples
            epochs.append(event)
        elif isinstance(event, RunFinished):
            finished = event.time
        elif isinstance(event, RunFailed):
            raise SystemExit(f"engine run failed: {event.message}")
    run.wait()
    window = last_epoch - started
    return dict(
        samples=samples, wall=window, train=epoch_seconds, to_finish=finished - started,
        saves=spent("save", started, last_epoch), fsync=spent("fsync", started, last_epoch),
        saves_all=spent("save", started, finished), save_count=len(SPANS["save"]), loading=loading[0],
        first_epoch=epochs[0].seconds, warm_seconds=sum(e.seconds for e in epochs[1:]),
        warm_samples=sum(e.samples for e in epochs[1:]),
    )


# --- loop 2: hand-written -------------------------------------------------------------------------

def make_optimizer(config: RunConfig, model: nn.Module, engines: bool = False):
    """The config's optimizer as a tutorial writes it, or (``engines``) built as the engine builds it."""
    assert config.optimizer in ("adam", "rmsprop"), config.optimizer
    if engines:
        optimizer = OPTIMIZERS[config.optimizer].build(model.parameters(), config)
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.RMSprop(model.parameters(), lr=config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay)
    scheduler = None
    if config.scheduler == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    elif config.scheduler != "none":
        raise SystemExit(f"scheduler {config.scheduler} not handled here")
    return optimizer, scheduler


def run_hand(config: RunConfig, data, engines_optimizer: bool = True) -> dict:
    device = data.splits["train"].x.device
    torch.manual_seed(config.seed)
    model = build_model(config, data.meta).to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer, scheduler = make_optimizer(config, model, engines_optimizer)
    shuffle = torch.Generator().manual_seed(config.seed)
    x, y = data.splits["train"].x, data.splits["train"].y
    vx, vy = data.splits["val"].x, data.splits["val"].y
    n, batch_size = len(x), config.batch_size
    batches = -(-n // batch_size)
    train_seconds = 0.0
    start = time.perf_counter()
    for _ in range(config.epochs):
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=shuffle).to(device)
        losses = torch.zeros(batches, device=device)
        for i in range(batches):
            rows = order[i * batch_size:(i + 1) * batch_size]
            inputs, targets = x[rows], y[rows]
            loss = loss_fn(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[i] = loss.detach() * len(targets)
        train_loss = float(losses.sum()) / n
        train_seconds += time.perf_counter() - epoch_start
        model.eval()
        with torch.no_grad():
            outputs = model(vx)
            val_loss = float(loss_fn(outputs, vy))
            accuracy = float((outputs.argmax(1) == vy).float().mean())
        if scheduler is not None:
            scheduler.step()
    wall = time.perf_counter() - start
    return dict(samples=n * config.epochs, wall=wall, train=train_seconds, val_loss=val_loss, accuracy=accuracy,
                train_loss=train_loss)


# --- loop 3: the seeds' DataLoader ----------------------------------------------------------------

class SeedMNIST(torch.utils.data.Dataset):
    """As torchvision.datasets.MNIST serves a sample: uint8 (28, 28) -> PIL 'L' -> transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        from torchvision import transforms

        self.images, self.labels = images[:, 0].contiguous(), labels.cpu()
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        from PIL import Image

        image = Image.fromarray(self.images[index].numpy(), mode="L")
        return self.transform(image), int(self.labels[index])


def to_uint8(split) -> torch.Tensor:
    """The engine's normalised (x/255 - 0.5) / 0.5 images back to their exact uint8 pixels."""
    return ((split.x.cpu() * 0.5 + 0.5) * 255).round().clamp(0, 255).to(torch.uint8)


def run_seeds(config: RunConfig, data, train_set: torch.utils.data.Dataset, val_set) -> dict:
    device = data.splits["train"].x.device
    torch.manual_seed(config.seed)
    model = build_model(config, data.meta).to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer, scheduler = make_optimizer(config, model)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=config.batch_size, shuffle=True)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=1000, shuffle=False)
    train_seconds, waiting = 0.0, Waiting()
    start = time.perf_counter()
    for _ in range(config.epochs):
        epoch_start = time.perf_counter()
        model.train()
        losses = []
        for inputs, targets in waiting.on(train_loader):
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach() * len(targets))
        train_loss = float(torch.stack(losses).sum()) / len(train_set)
        train_seconds += time.perf_counter() - epoch_start
        model.eval()
        total = correct = 0
        with torch.no_grad():
            for inputs, targets in val_loader:
                inputs, targets = inputs.to(device), targets.to(device)
                outputs = model(inputs)
                total += float(loss_fn(outputs, targets)) * len(targets)
                correct += int((outputs.argmax(1) == targets).sum())
        if scheduler is not None:
            scheduler.step()
    wall = time.perf_counter() - start
    return dict(samples=len(train_set) * config.epochs, wall=wall, train=train_seconds, loading=waiting.seconds,
                train_loss=train_loss, accuracy=correct / len(val_set))


class Waiting:
    """Iterates loaders and adds up the time spent waiting for their batches (data loading)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def on(self, loader):
        iterator = iter(loader)
        while True:
            fetch = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - fetch
            yield batch


# --- data -----------------------------------------------------------------------------------------

def write_fake_mnist(folder: Path, count: int = 10000) -> None:
    """Random digits in MNIST's IDX format, named like the t10k files (only when the real ones are absent)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, count, dtype=np.uint8)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, count, 28, 28) + images.tobytes())
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, count) + labels.tobytes())


def write_image_folder(folder: Path, per_class: int, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{i:05d}.png")


class SeedFolder(torch.utils.data.Dataset):
    """The tutorial's image-folder Dataset: open, convert, resize, ToTensor, Normalize per sample."""

    def __init__(self, paths, labels, size, mean, std):
        from torchvision import transforms

        self.paths, self.labels, self.size = paths, labels, size
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            image = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        return self.transform(image), torch.tensor([float(self.labels[index])])


def run_seed_folder(config: RunConfig, run_data, folder: Path) -> dict:
    """The seeds' convnet loop over the same image files (num_workers=0), loading vs compute timed."""
    dataset = run_data.splits["train"].dataset
    labels = run_data.splits["train"].y.cpu().reshape(-1).tolist()
    meta = run_data.meta
    train_set = SeedFolder(dataset.paths, labels, config.image_size, meta.x_mean.flatten().tolist(),
                           meta.x_scale.flatten().tolist())
    torch.manual_seed(config.seed)
    model = build_model(config, meta)
    loss_fn = nn.BCEWithLogitsLoss()
    optimizer, _ = make_optimizer(config, model)
    loader = torch.utils.data.DataLoader(train_set, batch_size=config.batch_size, shuffle=True)
    waiting = Waiting()
    start = time.perf_counter()
    for _ in range(config.epochs):
        model.train()
        for inputs, targets in waiting.on(loader):
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
    train = time.perf_counter() - start
    return dict(samples=len(train_set) * config.epochs, train=train, loading=waiting.seconds)


# --- GEMM throughput ------------------------------------------------------------------------------

def gemm_bound(batch: int = 64, sizes=(784, 500, 10)) -> dict:
    """Seconds per MNIST MLP step spent in its GEMMs alone, timed one shape at a time.

    Forward x @ W1.T (64x784 @ 784x500) and h @ W2.T (64x500 @ 500x10); backward dh = dy @ W2
    (64x10 @ 10x500), dW2 = dy.T @ h (10x64 @ 64x500), dW1 = dh.T @ x (500x64 @ 64x784); the input
    needs no gradient, so there is no dx GEMM.
    """
    d_in, d_hidden, d_out = sizes
    x, h, dy = torch.randn(batch, d_in), torch.randn(batch, d_hidden), torch.randn(batch, d_out)
    w1, w2, dh = torch.randn(d_hidden, d_in), torch.randn(d_out, d_hidden), torch.randn(batch, d_hidden)
    b1, b2 = torch.randn(d_hidden), torch.randn(d_out)
    gemms = {
        "fwd 64x784 @ 784x500": (lambda: torch.addmm(b1, x, w1.t()), batch * d_in * d_hidden),
        "fwd 64x500 @ 500x10": (lambda: torch.addmm(b2, h, w2.t()), batch * d_hidden * d_out),
        "bwd dh 64x10 @ 10x500": (lambda: dy.mm(w2), batch * d_out * d_hidden),
        "bwd dW2 10x64 @ 64x500": (lambda: dy.t().mm(h), batch * d_out * d_hidden),
        "bwd dW1 500x64 @ 64x784": (lambda: dh.t().mm(x), batch * d_hidden * d_in),
    }
    result = {}
    for name, (fn, macs) in gemms.items():
        for _ in range(20):
            fn()
        best = []
        for _ in range(7):
            reps = 200
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            best.append((time.perf_counter() - start) / reps)
        result[name] = (median(best), 2 * macs)
    return result


def in_thread(function, *args):
    """``function(*args)`` run in a thread of its own, as the engine runs its loop."""
    box = []
    thread = threading.Thread(target=lambda: box.append(function(*args)), name="bench-thread")
    thread.start()
    thread.join()
    return box[0]


# --- subprocess timings ---------------------------------------------------------------------------

def torchdeck_exe() -> list[str]:
    exe = Path(sys.executable).parent / "torchdeck"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cli"]


def help_time(count: int = 5) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        subprocess.run(torchdeck_exe() + ["--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def first_batch_time(args: list[str], out: str) -> tuple[float, float, float]:
    """(seconds to run_started, to the first batch event, to exit) of ``torchdeck train --json``."""
    start = time.perf_counter()
    process = subprocess.Popen(torchdeck_exe() + ["train", *args, "--json", "--out", out],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    started = first = float("nan")
    for line in process.stdout:
        event = json.loads(line).get("event")
        if event == "run_started" and started != started:
            started = time.perf_counter() - start
        if event == "batch" and first != first:
            first = time.perf_counter() - start
    process.wait()
    return started, first, time.perf_counter() - start


# --- report ---------------------------------------------------------------------------------------

def alternate(loops: dict, repeats: int) -> dict[str, list[dict]]:
    """Each loop ``repeats`` times, the order rotated every round so no loop always goes first."""
    results = {name: [] for name in loops}
    names = list(loops)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(loops[name]())
    return results


def engine_and_hand(config: RunConfig, data) -> dict:
    """The engine and the hand-written loop's three forms, ready for :func:`alternate`."""
    return {
        "engine": lambda: run_engine(config),
        "hand": lambda: run_hand(config, data),
        "hand-default": lambda: run_hand(config, data, engines_optimizer=False),
        "hand-thread": lambda: in_thread(run_hand, config, data),
    }


def engine_and_hand_rates(results: dict[str, list[dict]]) -> dict[str, float]:
    """Print the engine's and the hand-written loops' samples/s; the medians by name."""
    return {
        "e_wall": line("engine (wall, incl. checkpoints)", results["engine"]),
        "h_wall": line("hand-written, engine's optimizer", results["hand"]),
        "d_wall": line("hand-written, torch.optim defaults", results["hand-default"]),
        "t_wall": line("hand-written, in a worker thread", results["hand-thread"]),
        "e_train": line("engine (batches only)", results["engine"], "train"),
        "h_train": line("hand, engine's optimizer (batches)", results["hand"], "train"),
    }


def ratios(rates: dict[str, float]) -> str:
    return (f"{rates['e_wall'] / rates['h_wall']:.3f}   (batches only {rates['e_train'] / rates['h_train']:.3f}; "
            f"against torch.optim defaults {rates['e_wall'] / rates['d_wall']:.3f}; against the hand loop in a "
            f"worker thread, where the engine trains, {rates['e_wall'] / rates['t_wall']:.3f})")


def print_saves(engine_runs: list[dict]) -> None:
    run = engine_runs[0]
    print(f"  engine checkpoint writes: {run['save_count']} per run (save_every "
          f"{RunConfig().save_every:g}s), {median([r['saves'] for r in engine_runs]) * 1000:.1f} ms inside the "
          f"window, {median([r['saves_all'] for r in engine_runs]) * 1000:.1f} ms in all; run_started -> "
          f"run_finished {median([r['to_finish'] for r in engine_runs]):.2f}s")


def speed_options(config: RunConfig) -> None:
    """The engine with --amp and --compile, the first epoch (warm-up, compilation) left out."""
    print(f"  opt-in speed options (epochs 2-{config.epochs}: the first epoch, the warm-up, excluded; one run each)")
    rates = {}
    for label, options in (("plain", {}), ("--amp (bf16 autocast)", {"amp": True}),
                           ("--compile", {"compile": True}), ("--amp --compile", {"amp": True, "compile": True})):
        result = run_engine(config.replace(**options))
        rates[label] = result["warm_samples"] / result["warm_seconds"]
        print(f"    {label:30} {rates[label]:12,.0f} samples/s  ({rates[label] / rates['plain']:.2f}x plain; "
              f"first epoch {result['first_epoch']:.1f}s)")


def rate(result: dict, key: str = "wall") -> float:
    return result["samples"] / result[key]


def line(name: str, results: list[dict], key: str = "wall") -> float:
    rates = [rate(r, key) for r in results]
    value = median(rates)
    print(f"  {name:34} {value:12,.0f} samples/s   runs {', '.join(f'{v:,.0f}' for v in rates)}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir", default=str(DEFAULT_MNIST), help="MNIST IDX files (default: %(default)s)")
    parser.add_argument("--mnist-epochs", type=int, default=5, help="the preset's 5 by default")
    parser.add_argument("--iris-epochs", type=int, default=100, help="the preset's 100 by default")
    parser.add_argument("--convnet", action=argparse.BooleanOptionalAction, default=True,
                        help="also the ConvNet on a generated image folder")
    parser.add_argument("--speed-options", action=argparse.BooleanOptionalAction, default=True,
                        help="also the engine with --amp and --compile on the MNIST MLP")
    parser.add_argument("--tui", action=argparse.BooleanOptionalAction, default=True,
                        help="also the TUI dashboard against headless (digits, 150 epochs)")
    args = parser.parse_args()
    began = time.perf_counter()
    print(f"torch {torch.__version__} · {torch.get_num_threads()} intra-op threads · "
          f"{os.cpu_count()} CPUs · python {sys.version.split()[0]}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = Path(args.data_dir)
        if any(data_dir.glob("t10k-images*")):
            source = f"real MNIST files in {data_dir}"
        else:
            data_dir = tmp / "fake-mnist"
            data_dir.mkdir()
            write_fake_mnist(data_dir)
            source = f"GENERATED random data of MNIST's shape (no files in {args.data_dir})"

        # --- MNIST MLP ---
        mnist = RunConfig.for_task("mnist", data_dir=str(data_dir), epochs=args.mnist_epochs, out=str(tmp / "runs"))
        data = load_task(mnist, "cpu")
        train_set = SeedMNIST(to_uint8(data.splits["train"]), data.splits["train"].y)
        val_set = SeedMNIST(to_uint8(data.splits["val"]), data.splits["val"].y)
        assert torch.allclose(train_set[0][0], data.splits["train"].x[0], atol=1e-6), \
            "the seeds' transform must give the engine's input tensors"
        print(f"\nMNIST MLP 784-500-10, batch {mnist.batch_size}, {mnist.optimizer} lr {mnist.lr:g}, "
              f"{mnist.epochs} epochs (preset {RunConfig.for_task('mnist').epochs}), {source}; "
              f"train/val/test {'/'.join(str(v) for v in data.sizes().values())}; {args.repeats} repeats, "
              f"order rotated each repeat")
        results = alternate({**engine_and_hand(mnist, data),
                             "seeds": lambda: run_seeds(mnist, data, train_set, val_set)}, args.repeats)
        engine_r, hand_r, seeds_r = results["engine"], results["hand"], results["seeds"]
        print(" samples/s over wall time (engine: run_started -> last epoch event; others: their whole loop "
              "incl. validation), then over the batches only (engine: sum of epoch events' seconds)")
        rates = engine_and_hand_rates(results)
        s_wall = line("seeds' DataLoader loop", seeds_r)
        s_train = line("seeds' loop (batches only)", seeds_r, "train")
        print_saves(engine_r)
        print(f"  seeds' loop: {median([r['loading'] for r in seeds_r]):.2f}s of {median([r['train'] for r in seeds_r]):.2f}s "
              f"training time waiting for the DataLoader (PIL + ToTensor + Normalize per sample)")
        print(f"  final val accuracy: hand {hand_r[-1]['accuracy']:.4f}  seeds {seeds_r[-1]['accuracy']:.4f}")
        print(f"  RATIO engine/hand (wall, the ratio the goal uses) {ratios(rates)}")
        print(f"  RATIO engine/seeds (wall) {rates['e_wall'] / s_wall:.2f}x   "
              f"(batches only {rates['e_train'] / s_train:.2f}x)")
        mnist_rates = {**rates, "s_wall": s_wall}
        if args.speed_options:
            speed_options(mnist)

        # --- Iris ---
        iris = RunConfig.for_task("iris", epochs=args.iris_epochs, out=str(tmp / "runs"))
        iris_data = load_task(iris, "cpu")
        print(f"\nIris preset: mlp {iris.hidden} dropout {iris.dropout}, batch {iris.batch_size}, {iris.optimizer} "
              f"lr {iris.lr:g}, step scheduler, {iris.epochs} epochs; train/val/test "
              f"{'/'.join(str(v) for v in iris_data.sizes().values())}")
        results = alternate(engine_and_hand(iris, iris_data), args.repeats)
        engine_r, hand_r = results["engine"], results["hand"]
        rates = engine_and_hand_rates(results)
        window = median([r["wall"] for r in engine_r])
        print(f"  engine window {window:.3f}s: batches {median([r['train'] for r in engine_r]):.3f}s, checkpoint "
              f"writes {median([r['saves'] for r in engine_r]):.3f}s, rest (validation, metrics, snapshots, events) "
              f"{median([r['wall'] - r['saves'] - r['train'] for r in engine_r]):.3f}s; hand-written: batches "
              f"{median([r['train'] for r in hand_r]):.3f}s of {median([r['wall'] for r in hand_r]):.3f}s")
        print_saves(engine_r)
        print(f"  RATIO engine/hand (wall) {ratios(rates)}")
        iris_rates = rates

        # --- GEMM bound ---
        print("\nGEMM throughput for the MNIST MLP step (batch 64), one GEMM at a time")
        gemms = gemm_bound()
        step = sum(t for t, _ in gemms.values())
        flops = sum(f for _, f in gemms.values())
        for name, (t, f) in gemms.items():
            print(f"  {name:26} {t * 1e6:8.1f} us  {f / t / 1e9:6.1f} GFLOP/s")
        threaded = in_thread(gemm_bound)
        step_thread = sum(t for t, _ in threaded.values())
        bound = 64 / step
        print(f"  per step: {step * 1e6:.0f} us for {flops / 1e6:.1f} MFLOP ({flops / step / 1e9:.1f} GFLOP/s) -> "
              f"at most {bound:,.0f} samples/s from the GEMMs alone (in a worker thread: {step_thread * 1e6:.0f} us, "
              f"{64 / step_thread:,.0f} samples/s)")
        print(f"  engine MNIST: batches only {mnist_rates['e_train']:,.0f} samples/s = {mnist_rates['e_train'] / bound:.1%} "
              f"of that bound; wall {mnist_rates['e_wall']:,.0f} = {mnist_rates['e_wall'] / bound:.1%}")

        # --- ConvNet on an image folder ---
        if args.convnet:
            folder = tmp / "images"
            write_image_folder(folder, per_class=400, size=48)
            conv = RunConfig.for_task("cats-vs-dogs", data_dir=str(folder), image_size=32, epochs=1, augment=False,
                                      out=str(tmp / "runs"))
            conv_data = load_task(conv, "cpu")
            sizes = conv_data.sizes()
            print(f"\nConvNet (cats-vs-dogs preset: 5 convs, rmsprop lr {conv.lr:g}, batch {conv.batch_size}) on a "
                  f"GENERATED folder of 800 random 48x48 RGB PNGs resized to {conv.image_size}x{conv.image_size}, "
                  f"no augmentation, {conv.epochs} epoch; train/val/test "
                  f"{'/'.join(str(v) for v in sizes.values())}")
            results = {"engine": [], "seeds": []}
            for repeat in range(args.repeats):
                order = ["engine", "seeds"] if repeat % 2 == 0 else ["seeds", "engine"]
                for name in order:
                    if name == "engine":
                        results[name].append(run_engine(conv, time_loading=True))
                    else:
                        results[name].append(run_seed_folder(conv, conv_data, folder))
            workers = conv_data.splits["train"].loader.num_workers
            for name, label in (("engine", f"engine (DataLoader, {workers} workers)"),
                                ("seeds", "seeds' loop (num_workers=0)")):
                rs = results[name]
                value = median([r["samples"] / r["train"] for r in rs])
                load = median([r["loading"] for r in rs])
                train = median([r["train"] for r in rs])
                print(f"  {label:34} {value:10,.0f} images/s (batches only)  loading {load:.2f}s, "
                      f"compute {train - load:.2f}s of {train:.2f}s")
            e = median([r["samples"] / r["train"] for r in results["engine"]])
            s = median([r["samples"] / r["train"] for r in results["seeds"]])
            print(f"  RATIO engine/seeds (batches only) {e / s:.2f}x; engine wall run_started -> last epoch "
                  f"{median([r['wall'] for r in results['engine']]):.2f}s")

        # --- CLI timings ---
        print("\nCLI")
        helps = help_time(5)
        print(f"  torchdeck --help: median {median(helps):.3f}s   runs {', '.join(f'{v:.3f}' for v in helps)}")
        for label, cli in (("mnist", ["--task", "mnist", "--data-dir", str(data_dir), "--epochs", "1"]),
                           ("iris", ["--task", "iris", "--epochs", "1"])):
            runs = [first_batch_time(cli, str(tmp / "cli")) for _ in range(3)]
            print(f"  torchdeck train --task {label} --json: to run_started {median([r[0] for r in runs]):.2f}s, "
                  f"to first batch event {median([r[1] for r in runs]):.2f}s, to exit {median([r[2] for r in runs]):.2f}s "
                  f"(median of 3; first batch runs {', '.join(f'{r[1]:.2f}' for r in runs)})")

        # --- TUI against headless ---
        tui_ratio = None
        if args.tui:
            config = RunConfig.for_task("digits", epochs=150, out=str(tmp / "tui"))
            times = alternate({"headless": lambda: headless(config),
                               "tui": lambda: on_dashboard(config, (120, 36))}, args.repeats)
            tui_ratio = median(times["tui"]) / median(times["headless"])
            print("\nTUI dashboard (Textual headless driver, 120x36) against headless, digits 150 epochs "
                  "(~70 epochs/s: the most events per second of the presets)")
            for name, values in times.items():
                print(f"  {name:9} run_started -> run_finished median {median(values):.2f}s   "
                      f"runs {', '.join(f'{v:.2f}' for v in values)}")
            print(f"  RATIO tui/headless {tui_ratio:.3f}")

    print("\nGOALS")
    checks = [
        ("engine >= 0.95x hand-written loop, MNIST MLP (wall)", mnist_rates["e_wall"] / mnist_rates["h_wall"], 0.95),
        ("engine >= 0.95x hand-written loop, Iris (wall)", iris_rates["e_wall"] / iris_rates["h_wall"], 0.95),
        ("engine >= 4x the seeds' loop, MNIST MLP (wall)", mnist_rates["e_wall"] / mnist_rates["s_wall"], 4.0),
    ]
    for text, value, goal in checks:
        print(f"  {'PASS' if value >= goal else 'FAIL'}  {text}: {value:.3f}")
    print(f"  {'PASS' if median(helps) < 0.5 else 'FAIL'}  torchdeck --help < 0.5s: {median(helps):.3f}s")
    if tui_ratio is not None:
        print(f"  {'PASS' if tui_ratio <= 1.10 else 'FAIL'}  TUI run <= 1.10x the headless run: {tui_ratio:.3f}")
    print(f"\n(whole benchmark {time.perf_counter() - began:.0f}s)")


if __name__ == "__main__":
    main()
