"""Unit tests for trainers/run_config.py (overrides, optimizers, config)."""
import keras
import pytest

import trainer_test_model as tiny
from trainers import run_config
from zoo import optimizers
from zoo import registry
from zoo.config import TrainConfig


def test_parse_overrides_types_and_commas():
  config = tiny.TinyConfig()
  got = run_config.parse_overrides(config, [
      'train.steps=1e3,augment.scale_range=(0.9, 1.1),augment.flip=false',
      'train.learning_rate=0.5', 'train.num_eval_examples=5',
      'train.optimizer=sgd'])
  assert got == {'train.steps': 1000, 'augment.scale_range': (0.9, 1.1),
                 'augment.flip': False, 'train.learning_rate': 0.5,
                 'train.num_eval_examples': 5, 'train.optimizer': 'sgd'}
  assert isinstance(got['train.steps'], int)


@pytest.mark.parametrize('item, error, pattern', [
    ('augment.flip=maybe', ValueError, 'expected true or false'),
    ('train.steps', ValueError, 'not key=value'),
    ('train.steps=2.5', ValueError, 'expected an integer'),
    ('augment.scale_range=3', ValueError, 'expected a tuple'),
    ('train=3', ValueError, 'cannot be set as a whole'),
    ('input_size.x=3', KeyError, "'input_size' is not a config section"),
    ('train.nope=3', KeyError, r"TrainConfig has no field 'nope'"),
])
def test_parse_overrides_errors(item, error, pattern):
  with pytest.raises(error, match=pattern):
    run_config.parse_overrides(tiny.TinyConfig(), item)


def test_make_config_applies_shortcuts_after_overrides():
  entry = registry.get(tiny.NAME)
  config = run_config.make_config(entry, 'paper', 'train.batch_size=8,filters=2',
                                 steps=7, batch_size=2)
  assert (config.train.steps, config.train.batch_size, config.filters) == \
      (7, 2, 2)
  assert entry.config('paper').filters == 8  # presets untouched


# Adam and AdamW: the zoo's, Keras's with a fused update (zoo.optimizers).
@pytest.mark.parametrize('name, cls', [
    ('rmsprop', keras.optimizers.RMSprop), ('adam', optimizers.Adam),
    ('adamw', optimizers.AdamW), ('SGD', keras.optimizers.SGD)])
def test_make_optimizer(name, cls):
  opt = run_config.make_optimizer(TrainConfig(optimizer=name,
                                             learning_rate=0.25,
                                             weight_decay=0.01))
  assert type(opt) is cls
  assert float(opt.learning_rate.numpy()) == 0.25
  assert opt.weight_decay == pytest.approx(0.01)


def test_learning_rate_schedules():
  constant = TrainConfig(learning_rate=1e-3, steps=100)
  assert run_config.learning_rate_schedule(constant) == 1e-3
  cosine = TrainConfig(learning_rate=1e-3, steps=100,
                       lr_schedule='cosine')
  sched = run_config.learning_rate_schedule(cosine)
  assert float(sched(0)) == pytest.approx(1e-3)
  assert float(sched(50)) == pytest.approx(0.5e-3, rel=1e-4)  # cos(pi/2)
  assert float(sched(100)) == pytest.approx(0., abs=1e-9)
  warm = TrainConfig(learning_rate=1e-3, steps=110,
                     lr_schedule='cosine', warmup_steps=10)
  sched = run_config.learning_rate_schedule(warm)
  assert float(sched(5)) == pytest.approx(0.5e-3, rel=1e-4)
  assert float(sched(10)) == pytest.approx(1e-3, rel=1e-4)
  # The optimizer follows the schedule: at iteration 0 warm-up starts at 0.
  assert float(run_config.make_optimizer(warm).learning_rate) == \
      pytest.approx(0., abs=1e-9)
  with pytest.raises(ValueError, match='valid choices'):
    run_config.learning_rate_schedule(
        TrainConfig(lr_schedule='linear'))
