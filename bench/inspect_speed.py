"""How fast torchdeck opens large model files: a 1 GB safetensors file, a 1 GB torch.save
state dict, and the same as a whole pickled model (read as data).

Writes the files into a temporary folder (about 3 GB), then times, as the median of repeats:
``open_file`` (the tree: names, shapes, dtypes), ``torchdeck inspect`` end to end in a fresh
process (startup and printing included), and ``--stats`` of one 64 MB tensor. The files were
just written, so their pages are in the page cache: a cold disk adds its read time to the
statistics, not to listing the tree, which reads only the headers (safetensors) or the
pickle (torch.save, memory-mapped).

    python bench/inspect_speed.py [--gigabytes 1] [--repeats 3] [--folder DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.timing import median_seconds  # noqa: E402
from engine.store.modelfiles import open_file  # noqa: E402
from engine.use import tensorstats  # noqa: E402


class Big(nn.Module):
    """A whole model to pickle: ``layers`` of 16M-parameter linear layers."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(4096, 4096, bias=False) for _ in range(layers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    layers = max(1, round(args.gigabytes * 1e9 / (4096 * 4096 * 4)))
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        folder = Path(folder)
        model = Big(layers)
        state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
        files = {"safetensors": folder / "model.safetensors", "torch.save state dict": folder / "weights.pt",
                 "whole pickled model": folder / "whole.pt"}
        save_file(state, files["safetensors"])
        torch.save(state, files["torch.save state dict"])
        torch.save(model, files["whole pickled model"])
        del model, state
        print(f"{layers} tensors of 4096×4096 float32 ({layers * 4096 * 4096 * 4 / 1e9:.2f} GB per file); "
              f"median of {args.repeats}")
        torch_import = median_seconds(lambda: subprocess.run([sys.executable, "-c", "import torch"], check=True),
                                      args.repeats)
        print(f"(a fresh python that imports torch alone takes {torch_import:.2f} s)")
        for kind, path in files.items():
            opened = open_file(path)
            tree = median_seconds(lambda: open_file(path), args.repeats)
            command = [sys.executable, "-m", "cli", "inspect", str(path)]
            cli = median_seconds(lambda: subprocess.run(command, check=True, capture_output=True), args.repeats)
            first = next(iter(opened.tensors.values()))
            stats = median_seconds(lambda: tensorstats.stats(first), args.repeats)
            print(f"{kind:<24} open_file {tree * 1000:6.1f} ms   torchdeck inspect {cli:5.2f} s   "
                  f"stats of one 64 MB tensor {stats:6.2f} s   ({opened.format}, {len(opened.tensors)} tensors)")


if __name__ == "__main__":
    main()
