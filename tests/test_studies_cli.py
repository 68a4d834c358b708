"""The studies' commands (studies/): one parser (absl flags, studies.cli) for
all, each answering --help with its flags and a mistake with one line and
exit status 2."""

import subprocess
import sys

import pytest

from studies import cli
from studies.compare import report
from tests.test_train import REPO

#: Every study command and a flag its --help must list.
COMMANDS = {
  "studies.sweep": "--grid",
  "studies.plots": "--workdir",
  "studies.compare.report": "--previous_logs",
  "studies.compare.sampling": "--previous_components",
  "studies.one_class.study": "--raw_pixel_reference",
  "studies.one_class.report": "--sweep_rows",
  "studies.synthetic_alignment.study": "--rows",
  "studies.vje_fashion_mnist.figures": "--eval_rows",
  "studies.remake": "--out",
}


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_every_study_command_lists_its_flags(module):
  out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300)
  # (absl's app.run exits with 1 after --help, studies.cli.run with 0.)
  assert out.returncode in (0, 1) and "Traceback" not in out.stderr, out.stderr[-2000:]
  assert COMMANDS[module] in out.stdout, out.stdout[-2000:]


def test_a_mistake_is_one_line_and_status_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    report.main(["--out", str(tmp_path), "--methods", "vje", "--bogus_flag=1"])
  assert exit_info.value.code == 2
  assert "studies.compare.report: error: Unknown command line flag 'bogus_flag'" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    report.main(["--out", str(tmp_path)])  # --methods is required
  assert exit_info.value.code == 2 and "--methods" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    report.main(["--out", str(tmp_path), "--methods", "vje", "stray"])
  assert exit_info.value.code == 2 and "unexpected arguments ['stray']" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:  # no run under --root and no earlier row
    report.main(["--root", str(tmp_path), "--out", str(tmp_path), "--methods", "vje"])
  assert exit_info.value.code == 2 and "no finished run for ['vje']" in capsys.readouterr().err


def test_flags_of_two_commands_do_not_meet():
  """Each command parses on its own FlagValues: two commands in one process may both define --out."""
  first = cli.parse("a", lambda v: cli.flags.DEFINE_string("out", None, "", flag_values=v), ["--out", "x"])
  second = cli.parse("b", lambda v: cli.flags.DEFINE_string("out", None, "", flag_values=v), ["--out", "y"])
  assert (first.out, second.out) == ("x", "y")
