"""Bad-input drill of `python main.py --config=... --config.a.b=VALUE` (issue 14 item 5): wrong types, missing and
broken config files, unknown keys and flags. Each case runs main.py as a user does (one subprocess for all,
tests/drill/driver.py) and must stop before any JAX work with a non-zero exit and a first error line naming the
flag or field and what it takes; never a stack trace."""

from tests.drill.common import check_errors, module_drill

QUICK = "configs/quickstart.py"


def _cases(tmp):
  broken = tmp / "broken.py"
  broken.write_text("import ml_collections\n\ndef get_config(:\n  pass\n")
  no_function = tmp / "empty_config.py"
  no_function.write_text("X = 1\n")
  w = ["--workdir", str(tmp / "w")]
  return {
      "int field given a word": ([f"--config={QUICK}", "--config.train.steps=abc", *w],
                                 ["--config.train.steps=abc", "takes an integer", "'abc'"]),
      "int field given a float": ([f"--config={QUICK}", "--config.train.batch_size=2.5", *w],
                                  ["--config.train.batch_size=2.5", "takes an integer"]),
      "float field given a word": ([f"--config={QUICK}", "--config.train.base_lr=fast", *w],
                                   ["--config.train.base_lr=fast", "takes a number"]),
      "missing --config file": (["--config=configs/no_such_config.py", *w],
                                ["no_such_config.py", "no such config file"]),
      "missing --config file with overrides": (["--config=configs/no_such_config.py", "--config.train.steps=3", *w],
                                               ["no_such_config.py", "no such config file"]),
      "config file with a syntax error": ([f"--config={broken}", *w],
                                          ["broken.py", "does not load", "SyntaxError", "get_config()"]),
      "config file without get_config": ([f"--config={no_function}", *w],
                                         ["empty_config.py", "does not load", "get_config"]),
      "unknown override key": ([f"--config={QUICK}", "--config.train.stepz=3", *w],
                               ["--config.train.stepz", "has no field 'stepz'", "Valid keys of config.train", "steps"]),
      "unknown override section": ([f"--config={QUICK}", "--config.trian.steps=3", *w],
                                   ["--config.trian.steps", "config has no field 'trian'", "train"]),
      "override below a leaf": ([f"--config={QUICK}", "--config.train.steps.value=3", *w],
                                ["--config.train.steps.value", "config.train.steps is a value (1200), not a section",
                                 "--config.train.steps=VALUE"]),
      "unknown flag": ([f"--config={QUICK}", "--worksdir=x", *w],
                       ["Unknown command line flag 'worksdir'", "Did you mean: workdir"]),
      "unknown mode": ([f"--config={QUICK}", "--mode=fit", *w], ["--mode=fit", "one of <train|eval|predict|convert|export>"]),
      "missing --workdir": ([f"--config={QUICK}"], ["--workdir"]),
  }


drill = module_drill("main.py", _cases)


def test_bad_config_input_names_the_field_and_the_expected_form(drill):
  cases, results = drill
  assert not check_errors(cases, results, status=1)
