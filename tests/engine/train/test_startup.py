"""What a run costs before its first batch and after its last: one thread, only the imports it needs."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from conftest import shape_images, write_idx_pair

from engine.config import RunConfig
from engine.train.run import Run

REPO = Path(__file__).resolve().parents[3]


def test_a_run_of_mnist_imports_neither_scikit_learn_nor_torchvision(tmp_path):
    """Importing scikit-learn costs a second, torchvision a third; a run of MNIST needs neither."""
    images, labels = shape_images(200)
    write_idx_pair(tmp_path / "mnist", "t10k", images, labels)
    script = textwrap.dedent(f"""
        import sys
        from engine.config import RunConfig
        from engine.train.run import Run
        run = Run.new(RunConfig.for_task("mnist", data_dir={str(tmp_path / "mnist")!r}, epochs=1,
                                         out={str(tmp_path / "runs")!r}))
        run.start()
        result = run.wait()
        assert type(result).__name__ == "RunFinished", result
        print(sorted(name for name in sys.modules if name.split(".")[0] in ("sklearn", "torchvision")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_run_prepares_and_trains_in_one_thread_of_its_own(tmp_path):
    """Data, model and training all in the run's thread, so torch keeps one OpenMP team."""
    code = tmp_path / "threads.py"
    code.write_text(textwrap.dedent("""
        import threading
        from torch import nn

        class Net(nn.Module):
            SEEN = {"built": set(), "trained": set()}

            def __init__(self, in_features: int, num_classes: int):
                super().__init__()
                Net.SEEN["built"].add(threading.current_thread().name)
                self.layer = nn.Linear(in_features, num_classes)

            def forward(self, x):
                Net.SEEN["trained"].add(threading.current_thread().name)
                return self.layer(x)
    """))
    run = Run.new(RunConfig.for_task("iris", model=f"{code}:Net", epochs=2, out=str(tmp_path / "runs")))
    run.start()
    assert type(run.wait()).__name__ == "RunFinished"
    seen = type(run.parts.model).SEEN
    assert seen["built"] == seen["trained"] == {"torchdeck-run"}
    assert threading.current_thread().name not in seen["built"]


def test_a_run_never_started_leaves_no_thread_behind(tmp_path):
    run = Run.new(RunConfig.for_task("iris", epochs=1, out=str(tmp_path)))
    thread = run.worker.thread
    assert thread.is_alive()
    del run
    gc.collect()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_preparation_that_fails_raises_in_the_caller(tmp_path):
    import pytest

    from engine.errors import DataError

    with pytest.raises(DataError, match="not a folder"):
        Run.new(RunConfig.for_task("image-folder", data_dir=str(tmp_path / "missing"), out=str(tmp_path)))
