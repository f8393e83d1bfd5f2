"""A training run's model entry, config and optimizer from the command line's
words: a registered model (with an error that lists them), a preset, dotted
overrides (`train.learning_rate=1e-3`, typed like the field they replace),
the learning-rate schedule and the optimizer. trainers.train_lib builds runs
from these; trainers.evaluate and the benchmarks use them too.
"""
from __future__ import annotations

import ast
import dataclasses
import re
from typing import Any, Mapping, Sequence

import keras

from trainers import distribute
from zoo import config as config_lib
from zoo import optimizers
from zoo import registry

OPTIMIZERS = ('rmsprop', 'adam', 'adamw', 'sgd')


def get_entry(name: str) -> registry.ModelEntry:
  """registry.get with a ValueError that lists the registered models."""
  try:
    return registry.get(name)
  except KeyError:
    raise ValueError(f'unknown model {name!r}; valid choices are '
                     f'{", ".join(registry.names())}') from None


def validate_preset(entry: registry.ModelEntry, preset: str) -> str:
  choices = [p for p in registry.PRESETS if p in entry.presets] + sorted(
      p for p in entry.presets if p not in registry.PRESETS)
  return distribute.validate_choice(f'preset for model {entry.name!r}',
                                    preset, choices)


_OVERRIDE_SPLIT = re.compile(r',(?=\s*[A-Za-z_][\w.]*\s*=)')


def split_overrides(items: str | Sequence[str] | None) -> list[str]:
  """'a=1,b.c=(1, 2)' (or a list of such) -> ['a=1', 'b.c=(1, 2)'].

  Commas split only where the next item starts with `key=`, so tuple values
  keep theirs.
  """
  if not items:
    return []
  if isinstance(items, str):
    items = [items]
  out = []
  for item in items:
    out += [part.strip() for part in _OVERRIDE_SPLIT.split(item)
            if part.strip()]
  return out


def _lookup(config: Any, dotted: str) -> Any:
  value = config
  for i, part in enumerate(dotted.split('.')):
    if not dataclasses.is_dataclass(value):
      raise KeyError(f'override {dotted!r}: '
                     f'{".".join(dotted.split(".")[:i])!r} is not a config '
                     'section')
    names = [f.name for f in dataclasses.fields(value)]
    if part not in names:
      raise KeyError(f'override {dotted!r}: {type(value).__name__} has no '
                     f'field {part!r}; fields are {sorted(names)}')
    value = getattr(value, part)
  return value


def _coerce(key: str, text: str, current: Any) -> Any:
  """Parses `text` into the type of the field's current value."""
  text = text.strip()
  try:
    if isinstance(current, bool):
      lowered = text.lower()
      if lowered in ('1', 'true', 'yes', 'on'):
        return True
      if lowered in ('0', 'false', 'no', 'off'):
        return False
      raise ValueError('expected true or false')
    if isinstance(current, int):
      try:
        return int(text)
      except ValueError:
        number = float(text)  # accepts 1e4
        if not number.is_integer():
          raise ValueError('expected an integer') from None
        return int(number)
    if isinstance(current, float):
      return float(text)
    if isinstance(current, (tuple, list)):
      value = ast.literal_eval(text)
      if not isinstance(value, (tuple, list)):
        raise ValueError('expected a tuple such as (0.8, 1.2)')
      return tuple(value)
    if isinstance(current, str):
      return text
    if dataclasses.is_dataclass(current):
      raise ValueError('a config section cannot be set as a whole; set its '
                       'fields with dotted keys')
    # None or another type: a Python literal, else the string itself.
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text
  except (ValueError, SyntaxError) as e:
    raise ValueError(f'override {key}={text!r}: cannot parse as '
                     f'{type(current).__name__} ({e})') from None


def parse_overrides(config: Any,
                    items: str | Sequence[str] | Mapping[str, Any] | None
                    ) -> dict[str, Any]:
  """`key=value` strings (dotted keys) -> typed overrides for `config`."""
  if not items:
    return {}
  if isinstance(items, Mapping):
    for key in items:
      _lookup(config, key)
    return dict(items)
  out = {}
  for item in _rejoin_values(config, split_overrides(items)):
    if '=' not in item:
      raise ValueError(f'override {item!r} is not key=value (e.g. '
                       'train.learning_rate=1e-3)')
    key, text = item.split('=', 1)
    key = key.strip()
    out[key] = _coerce(key, text, _lookup(config, key))
  return out


def _rejoin_values(config: Any, items: list[str]) -> list[str]:
  """Joins an item whose key is not a config field back to the previous
  one, so a value may hold `name=` after a comma (a data mixture:
  train.data=h36m=/d/h36m:0.6,mpii=/d/mpii:0.4)."""
  out: list[str] = []
  for item in items:
    try:
      _lookup(config, item.split('=', 1)[0].strip())
      known = True
    except KeyError:
      known = False
    if not known and out:
      out[-1] = out[-1] + ',' + item
    else:
      out.append(item)
  return out


def make_config(entry: registry.ModelEntry, preset: str,
                overrides=None, steps: int | None = None,
                batch_size: int | None = None) -> Any:
  """Preset + overrides (+ the --steps / --batch_size shortcuts)."""
  validate_preset(entry, preset)
  base = entry.config(preset)
  values = parse_overrides(base, overrides)
  if steps is not None:
    values['train.steps'] = int(steps)
  if batch_size is not None:
    values['train.batch_size'] = int(batch_size)
  config = config_lib.replace(base, **values) if values else base
  for field in ('input_size', 'train', 'augment'):
    if not hasattr(config, field):
      raise TypeError(f'config of model {entry.name!r} lacks field {field!r} '
                      '(every model config has input_size, train, augment)')
  train = config.train
  if train.steps < 0:
    raise ValueError(f'steps must be >= 0, got {train.steps}')
  if train.batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {train.batch_size}')
  distribute.validate_choice('optimizer', train.optimizer.lower(), OPTIMIZERS)
  return config


def learning_rate_schedule(train: config_lib.TrainConfig):
  """A constant rate, or cosine decay to 0 over `steps` after linear warm-up."""
  schedule = distribute.validate_choice('lr_schedule', train.lr_schedule,
                                        ('constant', 'cosine'))
  lr = float(train.learning_rate)
  if schedule == 'constant':
    return lr
  warmup = int(train.warmup_steps)
  if warmup > 0:
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0., decay_steps=max(1, train.steps - warmup),
        warmup_target=lr, warmup_steps=warmup)
  return keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=lr, decay_steps=max(1, train.steps))


def make_optimizer(train: config_lib.TrainConfig) -> keras.optimizers.Optimizer:
  """The optimizer named by `train.optimizer` with its rate and decay (Adam
  and AdamW: zoo.optimizers', Keras's with a fused update)."""
  name = distribute.validate_choice('optimizer', train.optimizer.lower(),
                                    OPTIMIZERS)
  lr = learning_rate_schedule(train)
  wd = float(train.weight_decay) or None
  if name == 'rmsprop':
    return keras.optimizers.RMSprop(learning_rate=lr, weight_decay=wd)
  if name == 'adam':
    return optimizers.Adam(learning_rate=lr, weight_decay=wd)
  if name == 'adamw':
    return optimizers.AdamW(learning_rate=lr,
                            weight_decay=float(train.weight_decay))
  return keras.optimizers.SGD(learning_rate=lr, momentum=0.9, weight_decay=wd)
