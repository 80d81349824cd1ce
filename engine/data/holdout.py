"""scikit-learn's ``train_test_split`` for the split every run makes, without importing scikit-learn.

Importing scikit-learn (and the SciPy it loads) costs about a second of every run's start-up,
MNIST's and image folders' included, which need nothing else from it. This is the same
algorithm (``ShuffleSplit``, or ``StratifiedShuffleSplit`` with its ``_approximate_mode``) with
the same draws from the same ``RandomState``, so a split is the one scikit-learn gives and the
one older runs were evaluated on: tests/engine/data/test_holdout.py holds it to scikit-learn's.
"""

from __future__ import annotations

import math

import numpy as np


def train_test_split(rows: np.ndarray, test_size: float, random_state: int,
                     stratify: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) of ``rows``, as ``sklearn.model_selection.train_test_split(rows,
    test_size=test_size, random_state=random_state, stratify=stratify)`` returns them."""
    n_test = math.ceil(test_size * len(rows))
    n_train = len(rows) - n_test
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"a test share of {test_size} leaves no train or no test rows of {len(rows)}")
    rng = np.random.RandomState(random_state)
    if stratify is None:
        permutation = rng.permutation(len(rows))
        train, test = permutation[n_test:], permutation[:n_test]
    else:
        train, test = _stratified(np.asarray(stratify), n_train, n_test, rng)
    return rows[train], rows[test]


def _stratified(labels: np.ndarray, n_train: int, n_test: int, rng: np.random.RandomState):
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2 or min(n_train, n_test) < len(classes):
        raise ValueError("every class needs at least 2 samples, and each split one sample of every class")
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    in_train = _approximate_mode(counts, n_train, rng)
    in_test = _approximate_mode(counts - in_train, n_test, rng)
    train, test = [], []
    for members, n_i, t_i in zip(by_class, in_train, in_test):
        drawn = members.take(rng.permutation(len(members)), mode="clip")
        train.extend(drawn[:n_i])
        test.extend(drawn[n_i:n_i + t_i])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Samples per class of ``draws`` drawn from ``counts``: the shares rounded down, the rest
    given to the largest remainders, ties broken at random (scikit-learn's rule)."""
    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    need = int(draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            now = min(len(tied), need)
            floored[rng.choice(tied, size=now, replace=False)] += 1
            need -= now
            if need == 0:
                break
    return floored.astype(int)
