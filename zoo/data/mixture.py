"""Training data from several sources, sampled by weight: the data spec.

The papers train on mixtures: Human3.6M for 3D with MPII's 2D-only images
mixed in, or MPI-INF-3DHP next to Human3.6M. A data spec names the sources:

  DIR | synthetic                          one source (no mixture)
  NAME=PATH[:WEIGHT],NAME=PATH[:WEIGHT]... a mixture, e.g.
      h36m=/d/h36m:0.6,mpii=/d/mpii:0.4

PATH is a directory of zoo TFRecords (zoo.data.records) or `synthetic` (the
embedded dataset); NAME (letters, digits, `_`, `-`, `.`) is the source name
every example carries (the pipeline's `source` feature) and the key of the
per-source counts and metrics; WEIGHT (default 1) is the source's sampling
weight, normalised over the sources. `NAME=` may be left out; the source is
then named after the directory. Paths holding `,` or ending in `:NUMBER`
cannot be written in a spec. The same string works as `--data` and as the
config field `train.data`, so a preset can name a mixture.

The one pipeline (zoo.data.pipeline.make_dataset) reads a `Mixture` in place
of a directory: for training, each source is read (sharded per worker like a
single source), shuffled and repeated on its own, and
`tf.data.Dataset.sample_from_datasets` draws each example from source i with
probability weight_i / sum of weights; one augmentation then runs on all of
them. For evaluation the sources are read once each, round-robin.

Errors name the source and what was expected: a weight that is negative,
not a number or all weights zero; a name used twice; a directory that does
not exist or lacks the requested split; sources written by different record
format versions.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import os
import re
import threading
from typing import Any, Callable, Sequence

import numpy as np

SYNTHETIC = 'synthetic'
_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.\-]*$')
_WEIGHT = re.compile(r'^(.*):([^:/\\]*)$')


class MixtureError(ValueError):
  """A data spec or one of its sources is not usable; names the source."""


@dataclasses.dataclass(frozen=True)
class Source:
  """One source of a mixture: its name, directory and sampling weight."""
  name: str
  path: str          # a directory of zoo TFRecords, or 'synthetic'
  weight: float = 1.


@dataclasses.dataclass(frozen=True)
class Mixture:
  """Resolved sources (directories that exist), read by the pipeline."""
  sources: tuple[Source, ...]

  @property
  def names(self) -> list[str]:
    return [s.name for s in self.sources]

  @property
  def probabilities(self) -> list[float]:
    """Sampling probability of each source (weights normalised)."""
    total = sum(s.weight for s in self.sources)
    return [s.weight / total for s in self.sources]

  def spec(self) -> str:
    """The data spec string of this mixture."""
    return to_spec(self.sources)


def to_spec(sources: Sequence[Source]) -> str:
  return ','.join(f'{s.name}={s.path}:{s.weight:g}' for s in sources)


def is_mixture(spec: str) -> bool:
  """True when `spec` names sources (NAME=PATH or PATH:WEIGHT or several)."""
  spec = str(spec).strip()
  if ',' in spec or _WEIGHT.match(spec) and _is_number(
      _WEIGHT.match(spec)[2]):
    return True
  head = spec.split('=', 1)[0]
  return '=' in spec and bool(_NAME.match(head)) and not os.path.exists(spec)


def _is_number(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def parse(spec: str) -> list[Source]:
  """Parses a data spec (see the module docstring) into sources.

  Checks the weights (numbers, finite, >= 0, not all 0) and the names
  (valid, unique); the directories are checked by `check_splits`.
  """
  if not isinstance(spec, str) or not spec.strip():
    raise MixtureError(f'data spec must be a non-empty string, got {spec!r}')
  sources = []
  for position, entry in enumerate(spec.split(',')):
    entry = entry.strip()
    if not entry:
      raise MixtureError(f'data spec {spec!r}: source {position + 1} is '
                         'empty; expected NAME=PATH[:WEIGHT] separated by ","')
    name = None
    rest = entry
    if '=' in entry:
      head, tail = entry.split('=', 1)
      if _NAME.match(head.strip()):
        name, rest = head.strip(), tail.strip()
    weight = 1.
    match = _WEIGHT.match(rest)
    if match and match[2].strip() and not os.path.exists(rest):
      text = match[2].strip()
      if not _is_number(text):
        raise MixtureError(
            f'data spec: source {name or rest!r} has weight {text!r}, '
            'expected a number >= 0 (NAME=PATH:WEIGHT)')
      rest, weight = match[1].strip(), float(text)
    if not rest:
      raise MixtureError(f'data spec: source {name or position + 1!r} has '
                         'no path; expected NAME=PATH[:WEIGHT]')
    if name is None:
      name = SYNTHETIC if rest == SYNTHETIC else (
          os.path.basename(os.path.normpath(rest)) or rest)
    if not _NAME.match(name):
      raise MixtureError(f'data spec: source name {name!r} must be letters, '
                         'digits, "_", "-" or "." (give one with NAME=PATH)')
    if not math.isfinite(weight) or weight < 0:
      raise MixtureError(f'data spec: source {name!r} has weight {weight:g}; '
                         'expected a finite number >= 0')
    sources.append(Source(name, rest, weight))
  names = [s.name for s in sources]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise MixtureError(f'data spec: source name(s) {twice} used more than '
                       'once; name each source (NAME=PATH)')
  if not any(s.weight > 0 for s in sources):
    raise MixtureError(f'data spec: every source has weight 0 ({names}); '
                       'expected at least one weight > 0')
  return sources


def check_splits(sources: Sequence[Source], splits: Sequence[str],
                 list_shards: Callable[[str, str], list[str]]) -> None:
  """Every source is a directory holding every split in `splits`."""
  for source in sources:
    if not os.path.isdir(source.path):
      raise MixtureError(f'data source {source.name!r}: {source.path!r} is '
                         'not a directory; expected a directory of zoo '
                         f'TFRecords or {SYNTHETIC!r}')
    for split in splits:
      try:
        list_shards(source.path, split)
      except FileNotFoundError:
        raise MixtureError(
            f'data source {source.name!r} has no {split!r} split in '
            f'{source.path}: expected files named {split}-NNNNN-of-NNNNN.'
            'tfrecord') from None


def has_split(source: Source, split: str,
              list_shards: Callable[[str, str], list[str]]) -> bool:
  try:
    list_shards(source.path, split)
  except FileNotFoundError:
    return False
  return True


def check_format_versions(versions: dict[str, Any], current: int) -> None:
  """All sources were written by the current record format version.

  `versions`: source name -> the format_version of its manifest (None: no
  manifest, taken to be current).
  """
  found = {name: (current if v is None else v) for name, v in versions.items()}
  if len(set(found.values())) > 1 or any(v != current for v in found.values()):
    raise MixtureError(
        f'data sources were written by different record format versions '
        f'{found}; this version of the zoo reads format_version {current}: '
        'convert every source again with the same version of the converters')


# ----------------------------------------------------------------------------
# In the pipeline
# ----------------------------------------------------------------------------

def sampled_records(mixture: Mixture, split: str, *, training: bool,
                    repeat: bool, shuffle_buffer: int, seed: int,
                    deterministic: bool, num_input_pipelines: int,
                    input_pipeline_id: int,
                    read_source: Callable[..., Any]):
  """(path, index, serialized, source name) of the mixture's records.

  `read_source(source, files_seed)` returns one source's record stream
  (path, index, serialized), already sharded for this input pipeline
  (zoo.data.pipeline supplies it). Training: each stream is shuffled and
  repeated, then drawn from by weight (sample_from_datasets, seeded). Else
  the streams are read once each, round-robin, in source order.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  streams = []
  for i, source in enumerate(mixture.sources):
    ds = read_source(source, seed + 7919 * i)
    name = tf.constant(source.name)
    ds = ds.map(lambda path, index, serialized, name=name: (
        path, index, serialized, name))
    if training:
      ds = ds.shuffle(shuffle_buffer, seed=seed + 7919 * i,
                      reshuffle_each_iteration=True)
    if repeat:
      ds = ds.repeat()
    streams.append(ds)
  if len(streams) == 1:
    return streams[0]
  if training:
    keep = [i for i, s in enumerate(mixture.sources) if s.weight > 0]
    weights = [mixture.probabilities[i] for i in keep]
    return tf.data.Dataset.sample_from_datasets(
        [streams[i] for i in keep], weights=weights, seed=seed,
        stop_on_empty_dataset=False)
  choice = tf.data.Dataset.range(len(streams)).repeat()
  return tf.data.Dataset.choose_from_datasets(streams, choice,
                                              stop_on_empty_dataset=False)


class SourceCounts:
  """Examples per source drawn by a training input; readable at any time.

  `count(sources)` is called in-graph on each batch's `source` feature (one
  py_function per batch); `counts()` returns {name: examples}. Counts are of
  examples the input pipeline produced, which runs a few batches ahead of
  training (prefetch), and are per worker under multi-worker training.
  """

  def __init__(self):
    self._counts: collections.Counter = collections.Counter()
    self._lock = threading.Lock()

  def _add(self, sources) -> np.ndarray:
    names, counts = np.unique(sources.numpy(), return_counts=True)
    with self._lock:
      for name, count in zip(names, counts):
        self._counts[name.decode(errors='replace')] += int(count)
    return np.zeros([], np.int64)

  def count(self, sources):
    """In-graph: adds a batch's [B] source names; returns a dummy int64."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.py_function(self._add, [sources], tf.int64)

  def counts(self) -> dict[str, int]:
    with self._lock:
      return dict(sorted(self._counts.items()))

  def summary(self) -> str:
    """'h36m 600 (60.0%), mpii 400 (40.0%)'."""
    counts = self.counts()
    total = sum(counts.values())
    return ', '.join(f'{k} {v} ({100. * v / total:.1f}%)'
                     for k, v in counts.items()) if total else 'none yet'
