"""safetensors files (one, or sharded with an index) and ONNX models, opened by open_file:
tensors from the header alone, values read one at a time, crafted files refused in one line."""

from __future__ import annotations

import json
import os
import struct
import sys

import pytest
import torch
from safetensors.torch import save_file

from engine.errors import CheckpointError
from engine.store.modelfiles import open_file

WEIGHTS = {"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.tensor([0.5, -0.5]),
           "half": torch.ones(4, dtype=torch.bfloat16), "steps": torch.tensor([7]), "mask": torch.tensor([True, False])}


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_safetensors_file_gives_names_shapes_dtypes_metadata_and_values_on_demand(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(WEIGHTS, path, metadata={"format": "pt", "epoch": "3"})
    found = open_file(path)
    assert found.format == "safetensors" and sorted(found.tensors) == sorted(WEIGHTS)
    described = {name: (t.shape, t.dtype) for name, t in found.tensors.items()}
    assert described == {"layer.weight": ((2, 3), "float32"), "layer.bias": ((2,), "float32"),
                         "half": ((4,), "bfloat16"), "steps": ((1,), "int64"), "mask": ((2,), "bool")}
    assert found.facts == {"metadata.format": "pt", "metadata.epoch": "3"}
    assert found.parameters == 6 + 2 + 4 + 1 + 2 and found.tensors["half"].nbytes == 8
    for name, tensor in WEIGHTS.items():
        assert torch.equal(found.tensors[name].read(), tensor)


def test_a_folder_with_one_safetensors_file_opens_it(tmp_path):
    save_file(WEIGHTS, tmp_path / "model.safetensors")
    assert open_file(tmp_path).format == "safetensors"


def sharded(folder, weight_map=None):
    """Two shards and the index that maps each tensor to one."""
    names = sorted(WEIGHTS)
    save_file({name: WEIGHTS[name] for name in names[:2]}, folder / "model-00001-of-00002.safetensors",
              metadata={"format": "pt"})
    save_file({name: WEIGHTS[name] for name in names[2:]}, folder / "model-00002-of-00002.safetensors")
    weight_map = weight_map or {name: f"model-0000{1 + (i >= 2)}-of-00002.safetensors" for i, name in enumerate(names)}
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 123}, "weight_map": weight_map}))
    return index


def test_a_sharded_model_gives_the_tensors_of_all_its_shards(tmp_path):
    index = sharded(tmp_path)
    for path in (index, tmp_path):  # the index, or the folder holding it
        found = open_file(path)
        assert found.format == "safetensors-sharded" and sorted(found.tensors) == sorted(WEIGHTS)
        assert found.facts["metadata.total_size"] == 123 and found.facts["metadata.format"] == "pt"
        assert found.facts["shards"] == 2
        assert torch.equal(found.tensors["steps"].read(), WEIGHTS["steps"])


@pytest.mark.parametrize("shard", ["../x.safetensors", "/etc/passwd", "sub/x.safetensors", "..\\x.safetensors", ".."])
def test_a_shard_outside_the_index_folder_is_refused(tmp_path, shard):
    folder = tmp_path / "model"
    folder.mkdir()
    save_file(WEIGHTS, tmp_path / "x.safetensors")
    index = sharded(folder, {"layer.weight": shard})
    with pytest.raises(CheckpointError, match="only a file name in the index's folder") as error:
        open_file(index)
    assert shard in one_line(error)


def test_a_linked_shard_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    save_file(WEIGHTS, tmp_path / "elsewhere.safetensors")
    os.symlink(tmp_path / "elsewhere.safetensors", folder / "linked.safetensors")
    with pytest.raises(CheckpointError, match="the shard linked.safetensors is a symbolic link") as error:
        open_file(sharded(folder, {"layer.weight": "linked.safetensors"}))
    one_line(error)


def test_a_tensor_the_index_puts_in_a_shard_that_lacks_it_is_refused(tmp_path):
    index = sharded(tmp_path, {"half": "model-00002-of-00002.safetensors"})
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002\.safetensors lacks 1 tensor.*\(half\)"):
        open_file(index)


@pytest.mark.parametrize("content", [b"[1, 2]", b"{not json", json.dumps({"weight_map": {"a": 1}}).encode()])
def test_an_index_without_a_weight_map_is_refused(tmp_path, content):
    (tmp_path / "model.safetensors.index.json").write_bytes(content)
    with pytest.raises(CheckpointError, match="is not a safetensors index") as error:
        open_file(tmp_path / "model.safetensors.index.json")
    one_line(error)


def crafted(path, header: dict, data: bytes = b"\0" * 8, length: int | None = None):
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded) if length is None else length) + encoded + data)
    return path


@pytest.mark.parametrize("header, length", [
    ({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, None),  # values past the end
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 10**8),  # a header longer than the file
    ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, None),  # a shape its bytes do not fill
    ({"w": {"dtype": "NOPE", "shape": [2], "data_offsets": [0, 8]}}, None),
    ({}, 2**63),  # a length no header has
])
def test_a_crafted_safetensors_file_is_refused_in_one_line(tmp_path, header, length):
    path = crafted(tmp_path / "crafted.safetensors", header, length=length)
    with pytest.raises(CheckpointError, match=r"crafted\.safetensors is a damaged safetensors file \(") as error:
        open_file(path)
    one_line(error)


# --- ONNX ---------------------------------------------------------------------------------


def tiny_onnx(path, external: bool = False):
    """y = x @ W + b with a free batch dimension, built with onnx.helper (what exporters write)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(torch.arange(6.0).reshape(3, 2).numpy(), "fc.weight")
    bias = numpy_helper.from_array(torch.tensor([1.0, 2.0]).numpy(), "fc.bias")
    if external:
        bias.data_location = TensorProto.EXTERNAL
        bias.ClearField("raw_data")
        bias.external_data.add(key="location", value="../outside.bin")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "fc.weight"], ["h"]), helper.make_node("Add", ["h", "fc.bias"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [weight, bias, helper.make_tensor("scale", TensorProto.BFLOAT16, [2], [1.5, -2.0])],  # a type numpy lacks
    )
    model = helper.make_model(graph, producer_name="tests", opset_imports=[helper.make_opsetid("", 18)])
    model.doc_string = "a tiny model"
    onnx.save(model, str(path))
    return path


def test_an_onnx_model_gives_its_initializers_signature_and_header(tmp_path):
    found = open_file(tiny_onnx(tmp_path / "tiny.onnx"))
    assert found.format == "onnx" and list(found.tensors) == ["fc.weight", "fc.bias", "scale"]
    assert found.tensors["scale"].dtype == "bfloat16"
    assert torch.equal(found.tensors["scale"].read(), torch.tensor([1.5, -2.0], dtype=torch.bfloat16))
    assert (found.tensors["fc.weight"].shape, found.tensors["fc.weight"].dtype) == ((3, 2), "float32")
    assert torch.equal(found.tensors["fc.weight"].read(), torch.arange(6.0).reshape(3, 2))
    assert found.inputs == [{"name": "x", "shape": ["batch", 3], "dtype": "float32"}]
    assert found.outputs == [{"name": "y", "shape": ["batch", 2], "dtype": "float32"}]
    facts = found.facts
    assert facts["opset.ai.onnx"] == 18 and facts["producer_name"] == "tests" and facts["graph"] == "tiny"
    assert facts["nodes"] == 2 and facts["doc_string"] == "a tiny model" and facts["ir_version"] > 0


def test_an_onnx_initializer_in_external_data_is_listed_but_not_read(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\0" * 8)  # where the file points: out of its folder
    found = open_file(tiny_onnx(tmp_path / "model" / "tiny.onnx", external=True))
    assert found.tensors["fc.bias"].read is None and found.tensors["fc.bias"].shape == (2,)
    assert any("external data" in note for note in found.notes)


def test_an_onnx_model_exported_by_torch_opens(tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "linear.onnx"
    with pytest.warns(DeprecationWarning):  # the TorchScript-based exporter: fast, and enough for a Linear
        torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}})
    found = open_file(path)
    assert {name: t.shape for name, t in found.tensors.items()} == {"weight": (2, 3), "bias": (2,)}
    assert found.inputs[0]["shape"] == ["batch", 3] and found.outputs[0]["name"] == "y"


def test_a_damaged_onnx_file_is_refused_in_one_line(tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "broken.onnx"
    path.write_bytes(tiny_onnx(tmp_path / "tiny.onnx").read_bytes()[:-20] + b"\xff" * 5)
    with pytest.raises(CheckpointError, match=r"broken\.onnx is a damaged ONNX file \(") as error:
        open_file(path)
    one_line(error)


def test_onnx_without_its_package_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07")  # any bytes: the package is asked for first
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    with pytest.raises(CheckpointError, match=r"^reading ONNX files needs the onnx package: pip install 'torchdeck\[onnx\]'$"):
        open_file(path)
