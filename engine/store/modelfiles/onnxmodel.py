"""ONNX models: the graph's initializers as tensors, its signature, and what the header says.

The file is a protobuf read whole by the ``onnx`` package (an optional extra), never run.
Initializers kept in external data files are listed but not read: their locations come from
the file, and a path from someone else's file is not followed out of its folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError
from engine.store.modelfiles.model import ModelFile, TensorEntry
from engine.text import first_line

MISSING = "reading ONNX files needs the onnx package: pip install 'torchdeck[onnx]'"


def read(path: str | Path) -> ModelFile:
    """The ONNX model at ``path``, loaded without its external data; one line when it is damaged."""
    path = Path(path)
    try:
        import onnx
    except ImportError:
        raise CheckpointError(MISSING) from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, the system's errors: a file that is not ONNX
        raise CheckpointError(f"{path} is a damaged ONNX file ({first_line(exc)})") from None
    graph = model.graph
    tensors, external = {}, 0
    for initializer in graph.initializer:
        tensors[initializer.name] = _entry(initializer)
        external += tensors[initializer.name].read is None
    known = set(tensors)
    notes = [f"{external} initializer(s) keep their values in external data files, which are not read"] if external else []
    return ModelFile(
        path, "onnx", tensors=tensors, facts=_facts(model),
        inputs=[_signature(value) for value in graph.input if value.name not in known],
        outputs=[_signature(value) for value in graph.output], notes=notes,
    )


def _entry(initializer) -> TensorEntry:
    from onnx import numpy_helper
    from onnx.external_data_helper import uses_external_data

    dtype = _dtype(initializer.data_type)
    read = None if uses_external_data(initializer) else lambda: _to_torch(numpy_helper.to_array(initializer), dtype)
    return TensorEntry(initializer.name, tuple(int(d) for d in initializer.dims), dtype, read)


def _dtype(data_type: int) -> str:
    """ONNX's element type as torch names it (numpy's and ml_dtypes' names are torch's)."""
    import numpy as np
    import onnx

    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).name
    except (KeyError, TypeError, ValueError):
        return f"onnx type {data_type}"


def _to_torch(array, dtype: str) -> torch.Tensor:
    """A numpy array as a tensor; types numpy lacks (bfloat16, float8) go through their bits."""
    try:
        return torch.from_numpy(array.copy())
    except TypeError:
        bits = torch.from_numpy(array.view(f"uint{8 * array.itemsize}").copy())
        return bits.view(getattr(torch, dtype))


def _signature(value) -> dict[str, Any]:
    """A graph input or output: name, shape (sizes, or the names of free dimensions) and dtype."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return {"name": value.name, "shape": [], "dtype": kind or "unknown"}
    tensor = value.type.tensor_type
    shape = [dim.dim_value if dim.HasField("dim_value") else dim.dim_param or "?" for dim in tensor.shape.dim]
    return {"name": value.name, "shape": shape, "dtype": _dtype(tensor.elem_type)}


def _facts(model) -> dict[str, Any]:
    graph = model.graph
    facts: dict[str, Any] = {"ir_version": model.ir_version}
    facts.update((f"opset.{opset.domain or 'ai.onnx'}", opset.version) for opset in model.opset_import)
    facts.update({"producer_name": model.producer_name, "producer_version": model.producer_version,
                  "graph": graph.name, "nodes": len(graph.node), "doc_string": model.doc_string or graph.doc_string})
    facts.update((f"metadata.{prop.key}", prop.value) for prop in model.metadata_props)
    return {key: value for key, value in facts.items() if value != ""}
