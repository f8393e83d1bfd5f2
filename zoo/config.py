"""Config dataclasses shared by every model: training and augmentation.

Each model's own config dataclass (in its paper folder) derives from
ModelConfig, holds the paper's defaults and embeds these; presets are named
instances of it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable


@dataclasses.dataclass
class AugmentConfig:
  """Crop-time augmentation (defaults: the c2f paper / its released code)."""
  enabled: bool = True
  scale_range: tuple[float, float] = (0.75, 1.25)  # zoom of the person box
  rotation_deg: float = 30.          # in-plane rotation; std of N(0, r) clipped at 2r
  rotation_prob: float = 0.4         # released c2f code: 0 with probability 0.6
  flip: bool = True                  # left-right flip with joint swap
  color_gain: tuple[float, float] = (0.8, 1.2)  # per-channel multiplicative
  # Appearance augmentation beyond the papers (0 = off): with probability
  # color_permute_prob the RGB channels are randomly permuted, and with
  # grayscale_prob the crop becomes grey (channel mean). Training sets with
  # few identities (H36M and the embedded data have 5 training subjects)
  # otherwise let a network tie pose cues to their clothing colours.
  color_permute_prob: float = 0.
  grayscale_prob: float = 0.
  # Continuous colour jitter (0 / (1, 1) = off): a hue rotation drawn
  # uniformly in +-hue_delta of the colour circle (tf.image.adjust_hue's
  # delta) and a saturation factor drawn uniformly in saturation_range. Both
  # keep each pixel's brightest and (for the hue) darkest channel.
  hue_delta: float = 0.
  saturation_range: tuple[float, float] = (1., 1.)
  shift_fraction: float = 0.         # box-centre shift, fraction of box side
                                     # (MeTRAbs-style truncation)
  occlusion_prob: float = 0.         # synthetic occluder probability
  box_margin: float = 1.2            # crop side = margin * longer box side


@dataclasses.dataclass
class TrainConfig:
  """Optimisation and data-size settings the trainer reads."""
  optimizer: str = 'rmsprop'         # 'rmsprop' | 'adam' | 'adamw'
  learning_rate: float = 2.5e-4
  weight_decay: float = 0.
  # 'constant', or 'cosine': keras CosineDecay from learning_rate to 0 over
  # `steps` (after `warmup_steps` of linear warm-up when > 0).
  lr_schedule: str = 'constant'
  warmup_steps: int = 0
  batch_size: int = 4
  steps: int = 100_000
  checkpoint_every: int = 1000
  log_every: int = 50
  # Size of the embedded synthetic dataset generated for this preset.
  num_train_examples: int = 50_000
  num_test_examples: int = 2_000
  num_eval_examples: int | None = None  # None: the whole test split
  # Training data when the trainer's --data is not given: '' is the embedded
  # synthetic data; else a directory or a mixture such as
  # 'h36m=/d/h36m:0.6,mpii=/d/mpii:0.4' (zoo.data.mixture), so a preset can
  # name the data it was made for.
  data: str = ''


@dataclasses.dataclass
class ModelConfig:
  """What every model's config holds; each model's config dataclass derives
  from it (and overrides the defaults with its paper's)."""
  input_size: int = 256              # square crop side, px
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
  # The evaluation's flip test by default (a config that offers one declares
  # it as a field; here a plain class attribute, so it is no config field).
  flip_test = False


def replace(config: Any, **overrides) -> Any:
  """dataclasses.replace that also accepts dotted keys ('train.steps': 10)."""
  nested: dict[str, dict[str, Any]] = {}
  flat = {}
  for key, value in overrides.items():
    if '.' in key:
      head, tail = key.split('.', 1)
      nested.setdefault(head, {})[tail] = value
    else:
      flat[key] = value
  names = {f.name for f in dataclasses.fields(config)}
  for key in list(flat) + list(nested):
    if key not in names:
      raise KeyError(f'{type(config).__name__} has no field {key!r}; fields '
                     f'are {sorted(names)}')
  for head, sub in nested.items():
    flat[head] = replace(getattr(config, head), **sub)
  return dataclasses.replace(config, **flat)


def differences(config: Any, reference: Any,
                reference_name: str = 'reference',
                ignore: Iterable[str] = ()) -> list[str]:
  """'key=value (reference_name: value)' for each dotted field where
  `config` differs from `reference` (e.g. a run's config from the current
  preset; fields added since the run hold their defaults), apart from the
  dotted fields in `ignore`."""
  def flat(d, prefix=''):
    out = {}
    for key, value in d.items():
      if isinstance(value, dict):
        out.update(flat(value, f'{prefix}{key}.'))
      else:
        out[prefix + key] = list(value) if isinstance(value, tuple) else value
    return out
  have, want = (flat(to_dict(c)) for c in (config, reference))
  ignore = set(ignore)
  return [f'{k}={have.get(k)!r} ({reference_name}: {want.get(k)!r})'
          for k in sorted(set(have) | set(want))
          if have.get(k) != want.get(k) and k not in ignore]


def to_dict(config: Any) -> dict[str, Any]:
  return dataclasses.asdict(config)


def from_dict(config_cls: type, values: dict[str, Any]) -> Any:
  """Rebuilds a (nested) config dataclass from `to_dict` output."""
  kwargs = {}
  hints = {f.name: f for f in dataclasses.fields(config_cls)}
  for key, value in values.items():
    if key not in hints:
      raise KeyError(f'{config_cls.__name__} has no field {key!r}')
    default = hints[key].default_factory if hints[key].default_factory is not \
        dataclasses.MISSING else None
    if isinstance(value, dict) and default is not None and \
        dataclasses.is_dataclass(default()):
      value = from_dict(type(default()), value)
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[key] = value
  return config_cls(**kwargs)
