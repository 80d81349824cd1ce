"""torchvision classification models by name (issue 14): built for the task, sized, frozen."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.train.models import build_model
from engine.train.run import Run


def build(name, shape, classes=2, **options):
    config = RunConfig.for_task("mnist", model=name, **options)
    return build_model(config, SimpleNamespace(input_shape=list(shape), outputs=classes))


def folder(root, mode="RGB", count=12, size=32):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for n in range(count):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / label / f"{n}.png")
    return root


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 32, 32)])
def test_a_torchvision_model_takes_the_tasks_channels_and_classes(shape):
    model = build("mobilenet_v3_small", shape, classes=5).eval()
    assert model(torch.zeros(2, *shape)).shape == (2, 5)


def test_a_fixed_size_model_names_the_image_size_in_one_line():
    with pytest.raises(ConfigError, match=r"^model: vit_b_16 cannot take 3x32x32 images .*--image-size 224"):
        build("vit_b_16", (3, 32, 32))


def test_freeze_leaves_only_the_head_trainable():
    model = build("mobilenet_v3_small", (3, 32, 32), freeze=True)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["classifier.3.weight", "classifier.3.bias"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return folder(tmp_path_factory.mktemp("vision") / "photos")


def mobilenet_run(photos, out, **options):
    config = RunConfig.for_task("image-folder", data_dir=str(photos), model="mobilenet_v3_small", image_size=32,
                                epochs=1, out=str(out), **options)
    run = Run.new(config).start()
    assert run.wait().name == "run_finished"
    return run


def test_mobilenet_trains_on_an_image_folder_and_exports(photos, tmp_path, cli):
    run = mobilenet_run(photos, tmp_path / "runs")
    result = cli("export", run.run_dir, "--json")
    assert result.code == 0, result.err
    assert '"passed": true' in result.out


def test_pretrained_weights_load_into_the_body_and_the_head_fits_the_classes(tmp_path):
    import torchvision

    imagenet = torchvision.models.mobilenet_v3_small(weights=None)  # 1000 classes, as downloaded weights are
    path = tmp_path / "mobilenet.pth"
    torch.save(imagenet.state_dict(), path)
    model = build("mobilenet_v3_small", (3, 32, 32), classes=2, weights=str(path))
    assert torch.equal(model.features[0][0].weight, imagenet.features[0][0].weight)
    assert model.classifier[3].out_features == 2
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ConfigError, match="does not fit this model"):
        build("mobilenet_v3_small", (3, 32, 32), weights=str(path))


def test_a_frozen_body_stays_as_it_was_and_the_head_learns(photos, tmp_path):
    import torchvision

    path = tmp_path / "mobilenet.pth"
    start = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    torch.save(start, path)
    run = mobilenet_run(photos, tmp_path / "runs", weights=str(path), freeze=True)
    trained = run.parts.model.state_dict()
    assert torch.equal(trained["features.0.0.weight"], start["features.0.0.weight"])
    assert trained["classifier.0.weight"].equal(start["classifier.0.weight"])
    assert trained["classifier.3.weight"].shape == (1, 1024)  # two classes: one logit


def test_unknown_names_and_table_tasks_are_one_line(cli):
    unknown = cli("train", "--model", "mobilenet_v9", "--epochs", "1")
    assert unknown.code == 2 and "mobilenet_v9" in unknown.err and unknown.err.count("\n") == 1
    table = cli("train", "--task", "iris", "--model", "mobilenet_v3_small", "--epochs", "1")
    assert table.code == 2 and "needs image inputs" in table.err and table.err.count("\n") == 1
