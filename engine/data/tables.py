"""The csv task: the user's own table, typed, cleaned and encoded as plain data.

A CSV file with a header row becomes the same tensors as any table task. A column is a number
column when every value in it is a number, else a text column, one-hot encoded. A NaN of any
spelling is a missing value like an empty cell; an infinite number, or one beyond float32's
±3.4e38 (``1e39``), is refused naming its column, line and value, in training and ``predict``
alike, as it would poison training or a prediction. The target column decides between
classification and regression unless ``target_kind`` says. What is fitted (fill values,
categories, the scaler) is fitted on the training split only and kept in the checkpoint's
TaskMeta as lists, strings and floats: checkpoints load with ``weights_only=True``, and
``predict`` encodes new rows with the very function training used (:func:`encode`) instead of
unpickling scikit-learn objects.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from engine.data.meta import TaskMeta, TaskSpec
from engine.data.split import Split, TaskData, split_rows
from engine.errors import DataError, did_you_mean

MISSING = frozenset({"", "na", "n/a", "nan", "-nan", "+nan", "null", "none"})  # compared case-insensitively
FLOAT32_MAX = float(np.finfo(np.float32).max)  # models compute in float32: a larger value would be infinite
MAX_CLASSES = 20  # a whole-number target with more distinct values than this is a regression
MIN_PER_CLASS = 3  # stratified splits need 2 rows of a class to cut test off, then 2 to cut val
MANY_CATEGORIES = 100  # a text column with more is likely an identifier: say so


def read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """The non-blank rows of a CSV file with their line numbers; a byte order mark is skipped
    (spreadsheets write one), and every way of failing is one line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise DataError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"cannot read {path}: it is a folder, not a CSV file") from None
    except UnicodeDecodeError:
        raise DataError(f"cannot read {path}: it is not UTF-8 text") from None
    except (OSError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise DataError(f"{path} holds no rows")
    return rows


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def fits_float32(value: float) -> bool:
    """Whether a model's float32 inputs hold ``value``: False for NaN, infinities and beyond ±3.4e38."""
    return abs(value) <= FLOAT32_MAX


def encode(columns: list[dict[str, Any]], rows: Sequence[Sequence[str]],
           where: Sequence[str] | None = None) -> np.ndarray:
    """Rows of text cells, in ``columns`` order, as the model's unscaled inputs.

    A number column gives its value; a text column gives a 0/1 per category seen in training
    (all 0 for a value it never saw); a missing value gets the column's fill value, and is an
    error for a model trained on complete rows only. Training and ``predict`` both encode here.
    ``where`` names each row in errors (``row 1``, ``row 2``... unless given).
    """
    for row in rows:
        if len(row) != len(columns):
            names = ", ".join(column["name"] for column in columns)
            raise DataError(f"each input needs {len(columns)} values ({names}), got {len(row)}")
    where = where or [f"row {number}" for number in range(1, len(rows) + 1)]
    return np.hstack([_encode_column(column, [row[j] for row in rows], where) for j, column in enumerate(columns)])


def _encode_column(column: dict[str, Any], cells: list[str], where: Sequence[str]) -> np.ndarray:
    if column["type"] == "number":
        whole = _plain_numbers(cells)
        if whole is None:  # gaps, or values to refuse: cell by cell, to name them
            whole = np.asarray([_value(column, cell, row) for row, cell in zip(where, cells)], dtype=np.float64)
        return whole.astype(np.float32).reshape(-1, 1)
    values = [_value(column, cell, row) for row, cell in zip(where, cells)]
    index = {category: i for i, category in enumerate(column["categories"])}
    block = np.zeros((len(values), len(index)), dtype=np.float32)
    for row, value in enumerate(values):
        if value in index:
            block[row, index[value]] = 1.0
    return block


def _plain_numbers(cells: list[str]) -> np.ndarray | None:
    """The cells as numbers when every one is a number float32 holds, in one pass (a table may
    have 100,000 columns); None when any is not (a gap, text, NaN, too large)."""
    try:
        numbers = np.array([float(cell) for cell in cells])
    except ValueError:
        return None
    return numbers if (np.abs(numbers) <= FLOAT32_MAX).all() else None


def _value(column: dict[str, Any], cell: str, row: str) -> float | str:
    name = column["name"]
    if is_missing(cell):
        if column["fill"] is None:
            raise DataError(f"{row}: '{name}' has no value, and the model was trained on complete rows "
                            f"only (--missing impute trains one that fills gaps)")
        return column["fill"]
    if column["type"] == "text":
        return cell.strip()
    value = _number(cell)
    if value is None:
        raise DataError(f"{row}: '{name}' needs a number, not {cell.strip()!r}")
    if not fits_float32(value):
        raise _too_large(row, name, cell)
    return value


def _number_or_nan(cell: str) -> float:
    """The cell's value when it is a number, else NaN."""
    value = _number(cell)
    return math.nan if value is None else value


def _too_large(row: str, name: str, cell: str) -> DataError:
    return DataError(f"{row}: '{name}' is {cell.strip()!r}, not a finite number within ±3.4e38 (the float32 "
                     f"a model computes in); fix that value or leave the cell empty")


def _number(cell: str) -> float | None:
    """The cell's value when it is a number (infinite and huge ones too: see fits_float32), else None."""
    try:
        return float(cell)
    except ValueError:
        return None


def load_csv(spec: TaskSpec, config, device, meta: TaskMeta | None) -> TaskData:
    """The table named by ``data_dir`` as train/val/test tensors on ``device``.

    With ``meta`` (from a checkpoint) its kind, classes and encoding are used instead of new
    ones being fitted, so evaluation and resumed training see exactly the inputs training saw.
    """
    path, header, body = _read(config)
    target = _target_column(path, header, config.target)
    name = header[target]
    lines, rows, gaps, notes = _usable_rows(path, name, target, body, config.missing)
    values = [row[target] for row in rows]
    if meta is None:
        kind, class_names = _target_kind(name, values, config.target_kind)
    else:
        kind, class_names = meta.kind, meta.class_names
    labels = _labels(path, name, kind, class_names, values, lines)
    try:
        parts = split_rows(replace(spec, kind=kind), labels, config)
    except ValueError as exc:  # large fractions can leave a small class too few rows to cut further
        raise DataError(f"target: the classes of '{name}' are too small to split "
                        f"({str(exc).split('. ')[0]}); use a smaller --test-fraction or more rows",
                        option="target") from None
    where = [f"{path} line {line}" for line in lines]
    if meta is None:
        columns = _fit_columns(header, target, rows, where, gaps, parts["train"], config.missing)
    else:
        columns = meta.columns
    index = {column: i for i, column in enumerate(header)}
    positions = [_position(path, index, column["name"]) for column in columns]
    x = encode(columns, [[row[i] for i in positions] for row in rows], where)
    if meta is None:
        meta = _fit_meta(spec.name, kind, class_names, columns, x[parts["train"]], labels[parts["train"]])
    notes += _encoding_notes(columns, int(gaps[:, positions].sum()))
    return TaskData(meta, _splits(meta, x, labels, parts, device), notes)


def _read(config) -> tuple[Path, list[str], list[tuple[int, list[str]]]]:
    """The file's path, header and data rows, each row as long as the header."""
    if config.data_dir is None:
        raise DataError("data_dir: the csv task reads your table: give --data-dir FILE.csv (with a header row)",
                        option="data_dir")
    path = Path(config.data_dir).expanduser()
    rows = read_rows(path)
    header = [cell.strip() for cell in rows[0][1]]
    if all(_number(cell) is not None for cell in header if cell):
        raise DataError(f"{path} has no header row: its first line must name the columns")
    if "" in header:
        raise DataError(f"{path}: column {header.index('') + 1} of the header has no name")
    twice = [name for name, count in Counter(header).items() if count > 1]
    if twice:
        raise DataError(f"{path}: the header names the column '{twice[0]}' twice")
    if len(rows) == 1:
        raise DataError(f"{path} has a header but no rows")
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{path} line {line} has {len(row)} values, expected {len(header)} (one per column)")
    return path, header, rows[1:]


def _target_column(path: Path, header: list[str], target: str | None) -> int:
    columns = ", ".join(header)
    if target is None:
        raise DataError(f"target: the csv task needs --target COLUMN, the column to predict; {path} has: {columns}",
                        option="target")
    if target not in header:
        raise DataError(f"target: {path} has no column '{target}'{did_you_mean(target, header)}; it has: {columns}",
                        option="target")
    if len(header) == 1:
        raise DataError(f"{path} has no column besides the target '{target}' to learn from")
    return header.index(target)


def _position(path: Path, index: dict[str, int], name: str) -> int:
    if name not in index:
        raise DataError(f"{path} has no column '{name}', which the model was trained with")
    return index[name]


def _usable_rows(path: Path, target_name: str, target: int, body: list[tuple[int, list[str]]],
                 missing: str) -> tuple[list[int], list[list[str]], np.ndarray, list[str]]:
    """(line numbers, rows, mask of missing cells, note) of the rows to learn from.

    A row without a target value goes; with ``missing="drop"`` so does a row missing any value.
    The note says how many went, and none left is an error.
    """
    gaps = np.array([[is_missing(cell) for cell in row] for _, row in body], dtype=bool)
    keep = ~gaps.any(axis=1) if missing == "drop" else ~gaps[:, target]
    if missing == "drop":
        why, hint = "a missing value", "; --missing impute fills missing features instead"
    else:
        why, hint = f"no value in the target '{target_name}'", ""
    dropped = int((~keep).sum())
    if dropped == len(body):
        raise DataError(f"{path}: every row has {why}, so no row is left to learn from{hint}")
    note = [f"dropped {dropped} of {len(body)} rows of {path.name} with {why}{hint}"] if dropped else []
    kept = [pair for pair, wanted in zip(body, keep) if wanted]
    return [line for line, _ in kept], [row for _, row in kept], gaps[keep], note


def _encoding_notes(columns: list[dict[str, Any]], filled: int) -> list[str]:
    """Notes on the inputs: how many gaps were filled, and text columns that look like identifiers."""
    notes = [f"filled {filled} missing values with the training split's median (numbers) or most frequent "
             f"value (text)"] if filled else []
    return notes + [f"the text column '{column['name']}' has {len(column['categories'])} different values, one "
                    f"input each: if it is an identifier, remove it from the file"
                    for column in columns if column["type"] == "text" and len(column["categories"]) > MANY_CATEGORIES]


def _target_kind(name: str, values: list[str], wanted: str) -> tuple[str, list[str]]:
    """(kind, class names) of a target column: ``wanted`` (target_kind) or, for auto, regression
    for numbers with fractions or more than MAX_CLASSES values, else classification."""
    numbers = [_number(value) for value in values]
    if wanted == "regression" and None in numbers:
        text = values[numbers.index(None)]
        raise DataError(f"target: the column '{name}' holds text such as {text!r}, so it cannot be a "
                        f"regression target; use --target-kind classification", option="target")
    if wanted == "regression" or wanted == "auto" and None not in numbers and (
            len(set(numbers)) > MAX_CLASSES or not all(number.is_integer() for number in numbers)):
        return "regression", []
    names = sorted({_class_name(value) for value in values}, key=_class_order(values))
    if len(names) < 2:
        raise DataError(f"target: the column '{name}' holds only the value {names[0]!r}; "
                        f"a classifier needs at least 2 classes", option="target")
    return ("binary" if len(names) == 2 else "multiclass"), names


def _class_name(value: str) -> str:
    """A target value as a class name: ``1``, ``1.0`` and `` 1`` are one class, called ``1``."""
    number = _number(value)
    if number is None:
        return value.strip()
    return str(int(number)) if number.is_integer() else str(number)


def _class_order(values: list[str]):
    """Classes sort by number when every target value is one, else alphabetically."""
    if all(_number(value) is not None for value in values):
        return float
    return str


def _labels(path: Path, name: str, kind: str, class_names: list[str], values: list[str],
            lines: list[int]) -> np.ndarray:
    """The target as numbers (regression) or class indices; every class needs MIN_PER_CLASS rows."""
    if kind == "regression":
        numbers = [_number(value) for value in values]
        if None in numbers:  # only a file changed since training gets here
            row = numbers.index(None)
            raise DataError(f"{path} line {lines[row]}: the target '{name}' needs a number, "
                            f"not {values[row].strip()!r}")
        huge = [row for row, number in enumerate(numbers) if not fits_float32(number)]
        if huge:
            raise _too_large(f"{path} line {lines[huge[0]]}", name, values[huge[0]])
        return np.asarray(numbers, dtype=np.float32)
    index = {class_name: i for i, class_name in enumerate(class_names)}
    labels = [index.get(_class_name(value), -1) for value in values]
    if -1 in labels:  # likewise
        row = labels.index(-1)
        raise DataError(f"{path} line {lines[row]}: the target {values[row].strip()!r} is not one of the classes "
                        f"the model was trained on ({', '.join(class_names)})")
    labels = np.asarray(labels, dtype=np.int64)
    for class_name, count in zip(class_names, np.bincount(labels, minlength=len(class_names))):
        if count < MIN_PER_CLASS:
            raise DataError(f"target: the class '{class_name}' of '{name}' has {count} rows; every class needs at "
                            f"least {MIN_PER_CLASS}, one for each of the train, validation and test splits",
                            option="target")
    return labels


def _fit_columns(header: list[str], target: int, rows: list[list[str]], where: list[str], gaps: np.ndarray,
                 train: np.ndarray, missing: str) -> list[dict[str, Any]]:
    """How to encode each input column, learnt from its values in the training split.

    The number columns are fitted together, and so are the text columns (one imputer for each
    kind, not one per column: a table may have 100,000 columns).
    """
    features = [i for i in range(len(header)) if i != target]
    empty = [i for i in features if gaps[train, i].all()]
    if empty:
        raise DataError(f"the column '{header[empty[0]]}' has no values in the training split; fill it in or "
                        f"remove it")
    values = np.array([[_number_or_nan(cell) for cell in row] for row in rows])
    text = np.isnan(values) & ~gaps  # a NaN cell is a gap, so NaN elsewhere is text
    numeric = [i for i in features if not text[:, i].any()]
    huge = np.argwhere(~gaps[:, numeric] & ~(np.abs(values[:, numeric]) <= FLOAT32_MAX))
    if len(huge):
        row, column = huge[0]
        raise _too_large(where[row], header[numeric[column]], rows[row][numeric[column]])
    # scikit-learn is imported only by the tasks that use it (it costs a second of start-up)
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    columns = {}
    if numeric:
        fills = SimpleImputer(strategy="median").fit(values[np.ix_(train, numeric)]).statistics_
        for i, fill in zip(numeric, fills):
            columns[i] = {"name": header[i], "type": "number", "fill": float(fill) if missing == "impute" else None}
    texts = [i for i in features if i not in columns]
    if texts:
        cells = np.array([[None if gaps[r, i] else rows[r][i].strip() for i in texts] for r in train], dtype=object)
        imputer = SimpleImputer(strategy="most_frequent", missing_values=None)
        encoder = OneHotEncoder(handle_unknown="ignore").fit(imputer.fit_transform(cells))
        for i, fill, categories in zip(texts, imputer.statistics_, encoder.categories_):
            columns[i] = {"name": header[i], "type": "text", "fill": str(fill) if missing == "impute" else None,
                          "categories": [str(category) for category in categories]}
    return [columns[i] for i in features]


def _fit_meta(task: str, kind: str, class_names: list[str], columns: list[dict[str, Any]],
              x_train: np.ndarray, y_train: np.ndarray) -> TaskMeta:
    """The TaskMeta of a new csv run: number inputs standardised with the training split's mean
    and deviation, one-hot inputs left as 0/1; a regression target standardised likewise."""
    from sklearn.preprocessing import StandardScaler

    numeric = np.array([column["type"] == "number" for column in columns for _ in range(_width(column))], dtype=bool)
    mean, scale = np.zeros(x_train.shape[1]), np.ones(x_train.shape[1])
    if numeric.any():
        scaler = StandardScaler().fit(x_train[:, numeric])
        mean[numeric], scale[numeric] = scaler.mean_, scaler.scale_
    y_mean, y_scale = 0.0, 1.0
    if kind == "regression":
        target = StandardScaler().fit(y_train.reshape(-1, 1))
        y_mean, y_scale = float(target.mean_[0]), float(target.scale_[0])
    return TaskMeta(
        task=task, kind=kind, input_shape=[x_train.shape[1]], feature_names=[column["name"] for column in columns],
        class_names=class_names, x_mean=torch.as_tensor(mean, dtype=torch.float32),
        x_scale=torch.as_tensor(scale, dtype=torch.float32), y_mean=y_mean, y_scale=y_scale, columns=columns,
    )


def _width(column: dict[str, Any]) -> int:
    """How many model inputs a column becomes: 1 for a number, one per category for text."""
    return 1 if column["type"] == "number" else len(column["categories"])


def _splits(meta: TaskMeta, x: np.ndarray, labels: np.ndarray, parts: dict[str, np.ndarray],
            device) -> dict[str, Split]:
    """Scaled inputs and targets in the form the kind's loss takes, cut into splits on the device."""
    inputs = meta.scale_inputs(x)
    targets = torch.as_tensor(labels)
    if meta.kind == "regression":
        targets = ((targets - meta.y_mean) / meta.y_scale).unsqueeze(1)
    elif meta.kind == "binary":
        targets = targets.float().unsqueeze(1)
    return {name: Split(inputs[torch.as_tensor(rows)].to(device), targets[torch.as_tensor(rows)].to(device))
            for name, rows in parts.items()}
