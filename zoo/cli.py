"""Command-line plumbing for the zoo's programs (absl flags).

A program module defines its flags in `define_flags(flag_values)` and its
work in `run(flag_values, argv) -> exit status`; nothing is defined when the
module is imported, so library code and tests can import it next to other
programs. Then:

  def main(argv):                      # in-process, e.g. from a test
    return cli.call(define_flags, run, argv, 'python -m package.module')

  if __name__ == '__main__':           # as a program
    cli.run_program(define_flags, run)

`run_program` defines the flags on absl's global FLAGS and runs through
absl.app (--help / --helpfull, absl's logging flags; log records of Python
`logging` loggers go through absl's handler). `call` parses `argv` into a
fresh FlagValues, so repeated calls do not see each other's flags. Boolean
flags are absl's: --flag / --noflag (also --flag=true / --flag=false).

A bad command line (an unknown or malformed flag, a missing required flag,
`app.UsageError` from `run`) prints the error and exits with status 2 (as
argparse did) in `call`; absl.app reports it with the usage in
`run_program`.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app
from absl import flags

DefineFlags = Callable[[flags.FlagValues], None]
Run = Callable[[flags.FlagValues, Sequence[str]], int]


def _usage_error(program: str, message: str) -> SystemExit:
  print(f'{program}: error: {message}', file=sys.stderr)
  return SystemExit(2)


def parse(define_flags: DefineFlags, argv: Sequence[str],
          program: str) -> flags.FlagValues:
  """The flags of `argv` (without the program name) in a fresh FlagValues.

  Raises:
    SystemExit(2): the command line is bad (the error is on stderr).
  """
  flag_values = flags.FlagValues()
  define_flags(flag_values)
  try:
    rest = flag_values([program, *argv])
  except flags.Error as e:
    raise _usage_error(program, str(e)) from None
  if len(rest) > 1:
    raise _usage_error(program, f'unexpected arguments {rest[1:]}')
  return flag_values


def call(define_flags: DefineFlags, run: Run, argv: Sequence[str],
         program: str) -> int:
  """Runs a program in this process on `argv`; returns its exit status."""
  argv = list(argv)
  flag_values = parse(define_flags, argv, program)
  try:
    return run(flag_values, argv)
  except app.UsageError as e:
    raise _usage_error(program, str(e)) from None


# A program's exit status for bad input (a file, value or name it cannot use).
BAD_INPUT = 2


def bad_input(error: BaseException) -> int:
  """Prints `error: MESSAGE` to stderr and returns BAD_INPUT: what a program's
  `run` does with an error of its input. A KeyError's message is shown
  without the quotes str() adds to it."""
  message = (error.args[0] if isinstance(error, KeyError) and error.args
             else error)
  print(f'error: {message}', file=sys.stderr)
  return BAD_INPUT


def run_program(define_flags: DefineFlags, run: Run) -> None:
  """Runs a program with absl.app on sys.argv (exits with run's status)."""
  define_flags(flags.FLAGS)

  def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments {list(argv[1:])}')
    return run(flags.FLAGS, sys.argv[1:])

  app.run(main)
