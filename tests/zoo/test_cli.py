"""Tests for zoo/cli.py: programs parse absl flags into a fresh FlagValues
in-process, and a bad command line is a usage error with status 2."""
import pytest
from absl import app
from absl import flags

from zoo import cli


def define(flag_values):
  flags.DEFINE_string('name', None, 'required', flag_values=flag_values)
  flags.DEFINE_boolean('pictures', True, 'a boolean', flag_values=flag_values)
  flags.DEFINE_integer('count', 1, 'an integer', flag_values=flag_values)
  flags.mark_flag_as_required('name', flag_values=flag_values)


def run(args, argv):
  if args.count < 0:
    raise app.UsageError('--count must be >= 0')
  print(f'{args.name} {args.pictures} {args.count} {list(argv)}')
  return 3


def test_call_parses_flags_and_returns_the_status(capsys):
  assert cli.call(define, run, ['--name=a', '--nopictures', '--count=2'],
                  'prog') == 3
  assert capsys.readouterr().out == (
      "a False 2 ['--name=a', '--nopictures', '--count=2']\n")
  # A second call starts from the defaults again (no state carried over).
  assert cli.call(define, run, ['--name=b'], 'prog') == 3
  assert capsys.readouterr().out == "b True 1 ['--name=b']\n"
  assert 'name' not in flags.FLAGS  # nothing defined globally


@pytest.mark.parametrize('argv,message', [
    ([], 'name'),                                  # required flag missing
    (['--name=a', '--size=3'], "Unknown command line flag 'size'"),
    (['--name=a', '--count=x'], 'count'),          # not an integer
    (['--name=a', 'extra'], "unexpected arguments ['extra']"),
    (['--name=a', '--count=-1'], '--count must be >= 0'),  # UsageError
])
def test_bad_command_lines_exit_with_status_2(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    cli.call(define, run, argv, 'prog')
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith('prog: error: ') and message in err


@pytest.mark.parametrize('error, shown', [
    (ValueError('--box must be 4 numbers'), '--box must be 4 numbers'),
    (FileNotFoundError('x.h5: annotation file not found'),
     'x.h5: annotation file not found'),
    (KeyError("unknown model 'nope'"), "unknown model 'nope'"),
])
def test_bad_input_prints_one_error_line_and_returns_2(error, shown, capsys):
  assert cli.bad_input(error) == cli.BAD_INPUT == 2
  assert capsys.readouterr().err == f'error: {shown}\n'
