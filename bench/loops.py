"""The loops torchdeck is measured against, each a standalone script as a careful user writes it.

    python bench/loops.py hand    --data-dir DIR [--epochs 3] [--default-adam] [--thread]
    python bench/loops.py seeds   --data-dir DIR [--epochs 3]      # the tutorial: PIL + ToTensor per sample
    python bench/loops.py lightning --data-dir DIR [--epochs 3]    # PyTorch Lightning, when installed
    python bench/loops.py iris    [--epochs 100]

Nothing here imports torchdeck: each script pays for its own imports, data and setup, as the
user's script would. The MNIST loops train the seed MLP (784-500-10, batch 64, Adam 1e-3) on
the first 7,999 images of the MNIST files in DIR and validate on the next 1,000 after every
epoch (torchdeck's split sizes of the t10k files); Iris trains the preset (MLP 16-8, dropout
0.2, batch 16, Adam 1e-2, StepLR). The last line printed is a JSON object: wall-clock times
(``time.time()``) of the first batch's end and of the loop's end (``loop_end``), the seconds and samples of
the batches alone, and the loop's seconds including validation. bench/speed.py runs them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

TRAIN, VAL = 7999, 1000


def read_idx(path: Path) -> np.ndarray:
    """An MNIST IDX file (gzipped or not) as an array."""
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist(folder: str) -> tuple[np.ndarray, np.ndarray]:
    folder = Path(folder)
    images = read_idx(next(folder.glob("t10k-images*")))
    labels = read_idx(next(folder.glob("t10k-labels*")))
    return images, labels.astype(np.int64)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 10))


class Clock:
    """The times a loop reports: its first batch's end, its batches, its whole loop."""

    def __init__(self) -> None:
        self.first_batch = None
        self.batch_seconds = 0.0
        self.samples = 0
        self.started = time.perf_counter()

    def batch_done(self) -> None:
        if self.first_batch is None:
            self.first_batch = time.time()

    def report(self, epochs: int) -> None:
        loop = time.perf_counter() - self.started
        print(json.dumps(dict(first_batch=self.first_batch, loop_end=time.time(), batch_seconds=self.batch_seconds,
                              samples=self.samples, loop_seconds=loop, epochs=epochs)), flush=True)


def by_index(model, optimizer, loss_fn, x: torch.Tensor, y: torch.Tensor, batch_size: int, clock: Clock) -> float:
    """One epoch of tensors batched by index, losses kept on the device; its mean loss."""
    start = time.perf_counter()
    model.train()
    order = torch.randperm(len(x))
    batches = -(-len(x) // batch_size)
    losses = torch.zeros(batches)
    for i in range(batches):
        rows = order[i * batch_size:(i + 1) * batch_size]
        loss = loss_fn(model(x[rows]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[i] = loss.detach() * len(rows)
        clock.batch_done()
    mean = float(losses.sum()) / len(x)
    clock.batch_seconds += time.perf_counter() - start
    clock.samples += len(x)
    return mean


def hand(args) -> None:
    """Tensors batched by index, losses kept on the device: the fast loop a careful user writes."""
    images, labels = mnist(args.data_dir)
    x = (torch.from_numpy(images[:TRAIN + VAL].copy()).float().unsqueeze(1) / 255 - 0.5) / 0.5
    y = torch.from_numpy(labels[:TRAIN + VAL].copy())
    x_train, y_train, x_val, y_val = x[:TRAIN], y[:TRAIN], x[TRAIN:], y[TRAIN:]
    torch.manual_seed(0)
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **({} if args.default_adam else {"fused": True}))
    loss_fn = nn.CrossEntropyLoss()
    clock = Clock()
    for _ in range(args.epochs):
        train_loss = by_index(model, optimizer, loss_fn, x_train, y_train, 64, clock)
        model.eval()
        with torch.no_grad():
            outputs = model(x_val)
            val_loss, accuracy = float(loss_fn(outputs, y_val)), float((outputs.argmax(1) == y_val).float().mean())
    assert train_loss > 0 and val_loss > 0 and accuracy > 0.5
    clock.report(args.epochs)


def seeds(args) -> None:
    """The tutorial's loop: a Dataset that makes a PIL image per sample, ToTensor and Normalize,
    through a shuffling DataLoader."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    images, labels = mnist(args.data_dir)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])

    class Digits(Dataset):
        def __init__(self, rows: slice) -> None:
            self.images, self.labels = images[rows], labels[rows]

        def __len__(self) -> int:
            return len(self.images)

        def __getitem__(self, index: int):
            return transform(Image.fromarray(self.images[index], mode="L")), int(self.labels[index])

    train = DataLoader(Digits(slice(0, TRAIN)), batch_size=64, shuffle=True)
    val = DataLoader(Digits(slice(TRAIN, TRAIN + VAL)), batch_size=1000)
    torch.manual_seed(0)
    model, loss_fn = mlp(), nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    clock = Clock()
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for inputs, targets in train:
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            clock.batch_done()
        clock.batch_seconds += time.perf_counter() - start
        clock.samples += TRAIN
        model.eval()
        with torch.no_grad():
            for inputs, targets in val:
                float(loss_fn(model(inputs), targets))
    clock.report(args.epochs)


def lightning(args) -> None:
    """The same model, data and optimizer as ``hand`` through a Lightning Trainer (no bar, logger
    or checkpoints)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    images, labels = mnist(args.data_dir)
    x = (torch.from_numpy(images[:TRAIN + VAL].copy()).float().unsqueeze(1) / 255 - 0.5) / 0.5
    y = torch.from_numpy(labels[:TRAIN + VAL].copy())
    clock = Clock()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.loss_fn = mlp(), nn.CrossEntropyLoss()

        def training_step(self, batch, index):
            inputs, targets = batch
            return self.loss_fn(self.model(inputs), targets)

        def on_train_batch_end(self, *unused) -> None:
            clock.batch_done()

        def on_train_epoch_start(self) -> None:
            self.epoch_started = time.perf_counter()

        def on_train_epoch_end(self) -> None:
            clock.batch_seconds += time.perf_counter() - self.epoch_started
            clock.samples += TRAIN

        def validation_step(self, batch, index):
            inputs, targets = batch
            self.log("val_loss", self.loss_fn(self.model(inputs), targets))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3, fused=True)

    torch.manual_seed(0)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(Module(), DataLoader(TensorDataset(x[:TRAIN], y[:TRAIN]), batch_size=64, shuffle=True),
                DataLoader(TensorDataset(x[TRAIN:], y[TRAIN:]), batch_size=1000))
    clock.report(args.epochs)


def iris(args) -> None:
    """The Iris preset by hand: scikit-learn's data, split and scaler, tensors batched by index."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    data = load_iris()
    x_rest, x_test, y_rest, y_test = train_test_split(data.data, data.target, test_size=0.2, stratify=data.target,
                                                      random_state=42)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.125, stratify=y_rest, random_state=42)
    scaler = StandardScaler().fit(x_train)
    x_train, x_val = (torch.tensor(scaler.transform(a), dtype=torch.float32) for a in (x_train, x_val))
    y_train, y_val = torch.tensor(y_train), torch.tensor(y_val)
    torch.set_num_threads(1)  # a tiny model: torchdeck does the same
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(8, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.1)
    loss_fn = nn.CrossEntropyLoss()
    clock = Clock()
    for _ in range(args.epochs):
        by_index(model, optimizer, loss_fn, x_train, y_train, 16, clock)
        model.eval()
        with torch.no_grad():
            outputs = model(x_val)
            float(loss_fn(outputs, y_val)), float((outputs.argmax(1) == y_val).float().mean())
        scheduler.step()
    clock.report(args.epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loop", choices=["hand", "seeds", "lightning", "iris"])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/mnist-t10k"))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--default-adam", action="store_true", help="torch.optim.Adam's defaults (no fused kernel)")
    parser.add_argument("--thread", action="store_true", help="train in a worker thread, as torchdeck does")
    args = parser.parse_args()
    args.epochs = args.epochs or (100 if args.loop == "iris" else 3)
    loop = globals()[args.loop]
    if args.thread:
        worker = threading.Thread(target=loop, args=(args,))
        worker.start()
        worker.join()
    else:
        loop(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
