"""Merge the raw outputs of a job's batches into the output one unbatched job would give.

Counts are summed, ``memory`` concatenated in shot order, ``shots`` totalled; header and
``seed_simulator`` come from the first batch, ``single`` saves from the last batch that made
them, ``accum`` saves are summed; every average was run per shot (see
:mod:`noisefs.aerscope.rewrite`) and is averaged here over the shots that executed it, which
is what Aer's own average is, conditional (``c_*``) or inside control flow alike.
"""

from __future__ import annotations

import copy

import numpy as np

from noisefs.aerscope.rewrite import LabelSpec
from noisefs.aerscope.states import StateFolder


def _add(total, value):
    """``total + value`` for Aer's raw data: numbers, arrays, lists of numbers, dicts."""
    if total is None:
        if isinstance(value, dict):
            return {k: _add(None, v) for k, v in value.items()}
        if isinstance(value, list):
            return np.asarray(value)
        if isinstance(value, np.ndarray):
            return value.copy()
        return value
    if isinstance(value, dict):
        for k, v in value.items():
            total[k] = _add(total.get(k), v)
        return total
    if isinstance(value, list):
        return total + np.asarray(value)
    return total + value


def _scale(total, count: int):
    if isinstance(total, dict):
        return {k: _scale(v, count) for k, v in total.items()}
    if isinstance(total, np.ndarray):
        return total / count
    return total / count


def _join(chunks: list):
    """Per-shot lists of the batches, in shot order, in the type Aer gave them."""
    if all(isinstance(c, np.ndarray) for c in chunks):
        return np.concatenate(chunks)
    joined: list = []
    for chunk in chunks:
        joined.extend(chunk)
    return joined


class _Running:
    """Sum and count of per-shot values, for a ``mean`` label (per memory key)."""

    __slots__ = ("total", "count", "as_list")

    def __init__(self) -> None:
        self.total = None
        self.count = 0
        self.as_list = False

    def add(self, values) -> None:
        if isinstance(values, np.ndarray) and values.ndim >= 1:  # one row per shot
            if values.shape[0]:
                total = values.sum(axis=0)
                self.total = total if self.total is None else self.total + total
                self.count += values.shape[0]
            return
        for v in values:
            self.as_list = isinstance(v, list)
            self.total = _add(self.total, v)
            self.count += 1

    def value(self):
        mean = _scale(self.total, self.count)
        if self.as_list and isinstance(mean, np.ndarray):
            return mean.tolist()
        if isinstance(mean, np.generic):
            return mean.item()
        return mean


class ExperimentMerger:
    """The merged raw result of one experiment (circuit instance) over all batches."""

    def __init__(self, index: int, specs: dict[str, LabelSpec], folder: StateFolder) -> None:
        self.index = index
        self.specs = specs
        self.folder = folder
        self.first: dict | None = None
        self.shots = 0
        self.time_taken = 0.0
        self.counts: dict | None = None
        self.memory: list | None = None
        self.lists: dict[str, object] = {}
        self.last: dict[str, object] = {}
        self.sums: dict[str, object] = {}
        self.means: dict[str, dict] = {}
        self.extra: dict[str, object] = {}  # data keys that no spec describes (kept as last)

    def add(self, raw: dict, batch_index: int) -> None:
        """Fold one batch's raw experiment result in (its state lists are consumed)."""
        if self.first is None:
            self.first = {k: v for k, v in raw.items() if k != "data"}
        self.shots += int(raw.get("shots", 0))
        self.time_taken += float(raw.get("time_taken", 0.0))
        data = raw.get("data", {})
        for name, value in data.items():
            if name == "counts":
                if self.counts is None:
                    self.counts = {}
                for k, v in value.items():
                    self.counts[k] = self.counts.get(k, 0) + v
            elif name == "memory":
                if self.memory is None:
                    self.memory = []
                self.memory.extend(value)  # in place: linear in shots over all batches
            elif name in self.specs:
                self._add_label(self.specs[name], value, batch_index)
            else:
                self.extra[name] = value

    def _add_label(self, spec: LabelSpec, value, batch_index: int) -> None:
        label = spec.label
        if spec.kind in ("state", "density"):
            per_key = value if spec.conditional else {None: value}
            for key, values in per_key.items():
                self.folder.fold(self.index, label, key, values, spec.kind, spec.keep, batch_index)
        elif spec.kind == "mean":
            per_key = value if spec.conditional else {None: value}
            slots = self.means.setdefault(label, {})
            for key, values in per_key.items():
                slots.setdefault(key, _Running()).add(values)
        elif spec.kind == "concat":  # chunks, joined once at the end
            if spec.conditional:
                merged = self.lists.setdefault(label, {})
                for key, values in value.items():
                    merged.setdefault(key, []).append(values)
            else:
                self.lists.setdefault(label, []).append(value)
        elif spec.kind == "sum":
            self.sums[label] = _add(self.sums.get(label), copy.copy(value))
        elif spec.conditional:
            self.last.setdefault(label, {}).update(value)
        else:
            self.last[label] = value

    def output(self) -> dict:
        """The merged raw experiment result (Aer's layout, before formatting)."""
        out = copy.copy(self.first or {})
        out["shots"] = self.shots
        out["time_taken"] = self.time_taken
        metadata = copy.deepcopy(out.get("metadata", {}))
        types = metadata.setdefault("result_types", {})
        subtypes = metadata.setdefault("result_subtypes", {})
        data: dict[str, object] = {}
        if self.counts is not None:
            data["counts"] = dict(self.counts)
        if self.memory is not None:
            data["memory"] = self.memory
        data.update(self.extra)
        for label, spec in self.specs.items():
            value = self._label_value(spec)
            if value is None:
                continue
            data[label] = value
            types[label] = spec.save_type
            subtypes[label] = spec.subtype
        metadata["time_taken"] = self.time_taken
        out["metadata"] = metadata
        out["data"] = data
        return out

    def _label_value(self, spec: LabelSpec):
        label = spec.label
        if spec.kind in ("state", "density"):
            if spec.conditional:
                found = {}
                for key in self.folder.keys(self.index, label):
                    rho = self.folder.take(self.index, label, key)
                    if rho is not None:
                        found[key] = rho
                return found or None
            return self.folder.take(self.index, label, None)
        if spec.kind == "mean":
            slots = self.means.get(label)
            if not slots:
                return None
            if spec.conditional:
                return {key: run.value() for key, run in slots.items()}
            return slots[None].value()
        if spec.kind == "concat":
            chunks = self.lists.get(label)
            if chunks is None:
                return None
            if spec.conditional:
                return {key: _join(parts) for key, parts in chunks.items()}
            return _join(chunks)
        if spec.kind == "sum":
            return self.sums.get(label)
        return self.last.get(label)


def merge_outputs(first_output: dict, experiments: list[dict], wall_s: float) -> dict:
    """The whole job's raw output: the first batch's envelope, the merged experiments."""
    out = {k: v for k, v in first_output.items() if k != "results"}
    out["results"] = experiments
    out["time_taken"] = wall_s
    out["metadata"] = copy.deepcopy(first_output.get("metadata", {}))
    return out
