"""Opt-in speed options on real tiny runs: bfloat16 autocast (--amp) and torch.compile (--compile).

Both change how the model runs, never what a checkpoint holds: float32 weights under the
model's own parameter names, loadable by every other command and resumable with the option off.
"""

from __future__ import annotations

import numpy as np
import torch
from conftest import train

from engine.train.run import Run
from engine.use.predict import predict
from engine.use.saved import load


def state_dict(run):
    return torch.load(run.run_dir / "last.pt", weights_only=True)["model"]


def test_amp_trains_under_bfloat16_autocast_and_keeps_float32_weights(out):
    plain, _ = train(out, "digits", epochs=3)
    mixed, events = train(out, "digits", epochs=3, amp=True)
    assert events[-1].name == "run_finished" and events[-1].test["accuracy"] > 0.8
    weights = state_dict(mixed)
    assert all(tensor.dtype == torch.float32 for tensor in weights.values())
    assert any(not torch.equal(weights[k], state_dict(plain)[k]) for k in weights)  # autocast did run


def test_a_compiled_run_saves_plain_weights_that_load_and_resume_without_compiling(out):
    run, events = train(out, "iris", epochs=2, compile=True)
    assert any(e.name == "message" and "torch.compile" in e.text for e in events)
    assert events[-1].name == "run_finished"
    assert not any(key.startswith("_orig_mod.") for key in state_dict(run))
    saved = load(run.run_dir)
    answer = predict(saved, np.array([[5.1, 3.5, 1.4, 0.2]]))[0]
    assert answer["class"] == "setosa"
    resumed = Run.resume(run.run_dir, epochs=3, compile=False).start()
    assert resumed.wait().name == "run_finished"
