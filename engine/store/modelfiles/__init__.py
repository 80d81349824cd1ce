"""Any model file, opened safely: torch.save files of every kind, TorchScript, safetensors, ONNX.

``open_file`` tells the format from the file's first bytes (and ``.onnx``, ``.index.json``),
never from what a pickle inside claims, and hands it to that format's reader; each fills in a
ModelFile (engine.store.modelfiles.model) without running anything the file holds.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import CheckpointError
from engine.store.modelfiles.model import FORMATS, ModelFile, TensorEntry

__all__ = ["FORMATS", "ModelFile", "TensorEntry", "open_file"]

INDEX = "model.safetensors.index.json"


def open_file(path: str | Path) -> ModelFile:
    """The model file at ``path`` (a folder: its safetensors index or single safetensors file),
    or one CheckpointError saying why it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        return _open_folder(path)
    if not path.is_file():  # a FIFO or a device would block or never end
        raise CheckpointError(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty; it is not a model file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if path.name.endswith(".index.json"):
        from engine.store.modelfiles import safetensor

        return safetensor.read_sharded(path)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # a zip archive, or a pickle (torch's legacy format)
        from engine.store.modelfiles import torchsave, torchscript

        return torchscript.read(path) if torchscript.is_torchscript(path) else torchsave.read(path)
    from engine.store.modelfiles import safetensor

    if safetensor.looks_like(head) or path.suffix.lower() == ".safetensors":  # a damaged one: the package says why
        return safetensor.read(path)
    if path.suffix.lower() == ".onnx":
        from engine.store.modelfiles import onnxmodel

        return onnxmodel.read(path)
    raise CheckpointError(f"{path} is not a model file torchdeck can read "
                          f"(torch.save, TorchScript, safetensors or ONNX)")


def _open_folder(folder: Path) -> ModelFile:
    """A Hugging Face style folder: its sharded index, or its one safetensors file."""
    from engine.store.modelfiles import safetensor

    if (folder / INDEX).is_file():
        return safetensor.read_sharded(folder / INDEX)
    found = sorted(folder.glob("*.safetensors"))
    if len(found) == 1:
        return safetensor.read(found[0])
    raise CheckpointError(f"{folder} is not a torchdeck run directory or a model's folder (it holds no {INDEX} "
                          f"or single .safetensors file); name the model file inside it")
