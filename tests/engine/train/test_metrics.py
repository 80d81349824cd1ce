"""The metrics the engine reports agree with scikit-learn's.

Accuracy is counted in torch for speed (see engine/train/metrics.py); these checks hold it to
``sklearn.metrics.accuracy_score`` on the outputs and label layouts the tasks produce.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score

from engine.train.metrics import compute, labels, predict_classes


@settings(max_examples=60, deadline=None)
@given(samples=st.integers(1, 40), classes=st.integers(2, 7), seed=st.integers(0, 2**31 - 1))
def test_multiclass_accuracy_equals_scikit_learns(samples, classes, seed):
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.randn(samples, classes, generator=generator)
    targets = torch.randint(0, classes, (samples,), generator=generator)
    expected = accuracy_score(labels("multiclass", targets), predict_classes("multiclass", outputs).numpy())
    assert compute("multiclass", outputs, targets, meta=None)["accuracy"] == expected


@settings(max_examples=60, deadline=None)
@given(samples=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_binary_accuracy_equals_scikit_learns(samples, seed):
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.randn(samples, 1, generator=generator)  # one logit per sample
    targets = torch.randint(0, 2, (samples, 1), generator=generator).float()  # as BCE-with-logits wants them
    expected = accuracy_score(labels("binary", targets), predict_classes("binary", outputs).numpy())
    assert compute("binary", outputs, targets, meta=None)["accuracy"] == expected
