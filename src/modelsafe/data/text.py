"""``text``: a text-classification dataset from CSV or JSON-lines files.

Files (first found in each search directory, or ``root`` itself when it is a file): ``train.csv`` /
``train.jsonl`` with an optional ``test.csv`` / ``test.jsonl`` beside it, else one ``data.csv`` / ``data.jsonl``.
Each record has a text and a label column (``text`` and ``label`` unless named otherwise). Without a test file a
seeded split is made (:func:`modelsafe.data.holdout.holdout_split`).

Text is lowercased and split into runs of letters and digits (an inner apostrophe is kept: "don't"). The
vocabulary is built on the train split only: tokens seen at least ``min_freq`` times, most frequent first (ties
alphabetical), at most ``max_size`` entries including index 0 = padding and 1 = unknown. Each text becomes
``max_len`` int64 token ids, truncated or 0-padded at the end.

Labels: if every label is a non-negative integer it is the class index itself; otherwise the distinct labels,
sorted, become classes 0..C-1 and their names are kept in ``DatasetInfo.classes``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import torch

from modelsafe._checks import check_positive_int
from modelsafe.data.archives import first_existing
from modelsafe.data.files import missing, search_dirs
from modelsafe.data.holdout import holdout_split
from modelsafe.data.info import Dataset, DatasetInfo, TensorData
from modelsafe.errors import ModelsafeError

PAD, UNK = "<pad>", "<unk>"
TOKEN_PATTERN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_TRAIN = ("train.csv", "train.jsonl")
_TEST = ("test.csv", "test.jsonl")
_SINGLE = ("data.csv", "data.jsonl")


MAX_CLASS_INDEX = 100_000


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and return its runs of letters/digits (inner apostrophes kept)."""
    return TOKEN_PATTERN.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """Token list with index 0 = ``<pad>`` and 1 = ``<unk>``."""

    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.tokens[:2] != (PAD, UNK):
            raise ModelsafeError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {self.tokens[:2]}")
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, texts: Sequence[str], max_len: int) -> torch.Tensor:
        """(N, max_len) int64 token ids: unknown tokens map to 1, texts are cut or 0-padded at the end."""
        check_positive_int("max_len", max_len)
        out = torch.zeros((len(texts), max_len), dtype=torch.int64)
        for row, text in enumerate(texts):
            ids = [self.index.get(t, 1) for t in tokenize(text)[:max_len]]
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out


def build_vocabulary(token_lists: Iterable[list[str]], min_freq: int = 1, max_size: int = 20000) -> Vocabulary:
    """The ``max_size - 2`` most frequent tokens with count >= ``min_freq`` (ties broken alphabetically),
    after ``<pad>`` and ``<unk>``."""
    check_positive_int("min_freq", min_freq)
    check_positive_int("max_size", max_size)
    if max_size < 3:
        raise ModelsafeError(f"max_size must be >= 3 (padding, unknown and one token), got {max_size}")
    counts = Counter(chain.from_iterable(token_lists))
    kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
    return Vocabulary((PAD, UNK, *kept[:max_size - 2]))


def read_records(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[object]]:
    """(texts, raw labels) from a ``.csv`` (with header) or ``.jsonl`` (one JSON object per line) file; a file
    that is not text (binary bytes, NUL characters) is a one-line error naming it."""
    try:
        return _read_records(path, text_column, label_column)
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise ModelsafeError(f"{path} cannot be read as UTF-8 CSV/JSONL text ({exc})") from None


def _read_records(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[object]]:
    records: list[dict] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            records = [dict(r, _line=i) for i, r in enumerate(reader, 2)]
            columns = reader.fieldnames or []
    else:
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ModelsafeError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
                if not isinstance(obj, dict):
                    raise ModelsafeError(f"{path}:{i}: expected a JSON object, got {type(obj).__name__}")
                records.append(dict(obj, _line=i))
        columns = sorted({k for r in records for k in r if k != "_line"})
    if not records:
        raise ModelsafeError(f"{path} holds no records")
    for col in (text_column, label_column):
        if col not in columns:
            raise ModelsafeError(f"{path}: no column {col!r}; columns are {list(columns)}")
    texts, labels = [], []
    for r in records:
        text, label = r.get(text_column), r.get(label_column)
        if not isinstance(text, str) or label is None or label == "":
            raise ModelsafeError(f"{path}:{r['_line']}: needs a text string and a label")
        texts.append(text)
        labels.append(label)
    return texts, labels


def _label_key(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    return int(text) if re.fullmatch(r"[0-9]+", text) else text


def encode_labels(labels: Sequence[object]) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Class indices and class names (see the module docstring)."""
    keys = [_label_key(v) for v in labels]
    if all(isinstance(k, int) and k >= 0 for k in keys):
        num = max(keys) + 1
        if num > MAX_CLASS_INDEX:
            raise ModelsafeError(f"label {max(keys)} is too large for a class index (at most "
                                 f"{MAX_CLASS_INDEX - 1}); integer labels are used as class indices")
        return torch.tensor(keys, dtype=torch.int64), tuple(str(i) for i in range(num))
    names = sorted({str(k) for k in keys})
    index = {n: i for i, n in enumerate(names)}
    return torch.tensor([index[str(k)] for k in keys], dtype=torch.int64), tuple(names)


def find_files(root: str | os.PathLike | None) -> tuple[Path, Path | None]:
    """(train or single file, test file or None)."""
    if root is not None and Path(root).is_file():
        return Path(root), None
    for d in search_dirs("text", root):
        train = first_existing(d, _TRAIN)
        if train is not None:
            return train, first_existing(d, _TEST)
        single = first_existing(d, _SINGLE)
        if single is not None:
            return single, None
    raise missing("text", [" or ".join(_TRAIN) + " (optionally with " + " or ".join(_TEST) + ")",
                           "or " + " or ".join(_SINGLE)], root,
                  "Pass root= as a CSV/JSONL file or a folder holding those files.")


def load_text(root: str | os.PathLike | None = None, text_column: str = "text", label_column: str = "label",
              max_len: int = 128, min_freq: int = 1, max_size: int = 20000, test_fraction: float = 0.2,
              seed: int = 0) -> Dataset:
    """Token-id dataset: ``x`` is int64 (N, max_len), ``y`` int64 class indices. ``extras`` holds the
    ``vocabulary`` (a :class:`Vocabulary`, to encode new text), the ``split`` record and the ``files`` read."""
    check_positive_int("max_len", max_len)
    first, test_file = find_files(root)
    texts, raw = read_records(first, text_column, label_column)
    if test_file is not None:
        test_texts, test_raw = read_records(test_file, text_column, label_column)
        n_train = len(texts)
        texts, raw = texts + test_texts, raw + test_raw
        train_idx, test_idx = torch.arange(n_train), torch.arange(n_train, len(texts))
        record: dict = {"method": "separate files", "train_size": n_train, "test_size": len(test_texts)}
    else:
        train_idx, test_idx, record = holdout_split(len(texts), test_fraction, seed, "text")
    try:
        y, classes = encode_labels(raw)
    except ModelsafeError as exc:
        names = " / ".join(str(p) for p in (first, test_file) if p is not None)
        raise ModelsafeError(f"{names}: {exc}") from None
    vocab = build_vocabulary((tokenize(texts[i]) for i in train_idx.tolist()), min_freq, max_size)
    x = vocab.encode(texts, max_len)
    info = DatasetInfo("text", "text", len(classes), (max_len,), classes=classes, vocab_size=len(vocab))
    files = [str(first)] + ([str(test_file)] if test_file is not None else [])
    return Dataset(info, TensorData(x[train_idx], y[train_idx]), TensorData(x[test_idx], y[test_idx]),
                   extras={"vocabulary": vocab, "split": record, "files": files})
