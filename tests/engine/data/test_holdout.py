"""The split every run makes is scikit-learn's train_test_split, draw for draw."""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split as sklearn_split

from engine.data.holdout import train_test_split


@pytest.mark.parametrize("case", range(60))
def test_the_split_is_scikit_learns(case):
    rng = np.random.default_rng(case)
    n = int(rng.integers(20, 3000))
    classes = int(rng.integers(2, 12))
    labels = rng.integers(0, classes, n)
    labels[:2 * classes] = np.repeat(np.arange(classes), 2)  # every class twice at least
    if case % 3 == 0:  # skewed classes, the ties _approximate_mode breaks at random
        labels = np.where(rng.random(n) < 0.8, 0, labels)
        labels[:2 * classes] = np.repeat(np.arange(classes), 2)
    rows = rng.permutation(n) if case % 2 else np.arange(n)
    share = float(rng.choice([0.1, 0.2, 1 / 9, 0.125, 0.3333, rng.uniform(0.05, 0.5)]))
    seed = int(rng.choice([42, 0, case]))
    for stratify in (labels, None):
        if stratify is not None and min(round(share * n), n - round(share * n)) < classes:
            continue
        ours = train_test_split(rows, test_size=share, random_state=seed, stratify=stratify)
        theirs = sklearn_split(rows, test_size=share, random_state=seed, stratify=stratify)
        for mine, expected in zip(ours, theirs):
            np.testing.assert_array_equal(mine, expected)


def test_the_presets_splits_are_scikit_learns():
    """Iris' and digits' own label vectors, cut as split_rows cuts them (test first, then val)."""
    from sklearn import datasets

    for loader in (datasets.load_iris, datasets.load_digits, datasets.load_wine):
        labels = loader().target
        rows = np.arange(len(labels))
        for share in (0.2, 0.1 / 0.8):
            ours = train_test_split(rows, test_size=share, random_state=42, stratify=labels[rows])
            theirs = sklearn_split(rows, test_size=share, random_state=42, stratify=labels[rows])
            for mine, expected in zip(ours, theirs):
                np.testing.assert_array_equal(mine, expected)
            rows = ours[0]


def test_a_split_that_leaves_a_side_empty_is_refused():
    with pytest.raises(ValueError):
        train_test_split(np.arange(5), test_size=1.0, random_state=0)
    with pytest.raises(ValueError, match="every class"):
        train_test_split(np.arange(6), test_size=0.5, random_state=0, stratify=np.array([0, 0, 0, 0, 0, 1]))
