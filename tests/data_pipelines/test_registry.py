"""The data-set registry: entries, lookups, errors, lazy builder import, and data.augment resolution."""
import subprocess
import sys

import ml_collections
import pytest

from data_pipelines import registry


def test_entries():
  assert registry.names() == ("crowdhuman", "citypersons", "synthetic_crowds", "caltech")
  ch, cp, sy, ca = (registry.get(n) for n in registry.names())
  assert (ch.gt_format, ch.augment, ch.numpy_source, ch.evals) == ("odgt", "flip", False, ("crowdhuman",))
  assert (cp.gt_format, cp.augment, cp.numpy_source, cp.evals) == ("citypersons_json", "alfnet", False,
                                                                   ("citypersons",))
  assert (sy.gt_format, sy.augment, sy.numpy_source, sy.evals) == ("odgt", "flip", True, ("crowdhuman",))
  assert (ca.gt_format, ca.augment, ca.numpy_source, ca.evals) == ("caltech_bbgt", "flip", False, ("caltech",))
  assert all(registry.get(n).splits == ("train", "val") for n in registry.names()[:3])
  assert ca.splits == ("train", "train_10x", "test")


def test_unknown_name_lists_the_registered_ones():
  with pytest.raises(ValueError, match="config.data.name='caltch': unknown data set; registered: crowdhuman, "
                                       "citypersons, synthetic_crowds, caltech"):
    registry.get("caltch")


def test_register_checks(monkeypatch):
  monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
  entry = registry.DataSet("tiny", "data_pipelines.tiny:Tiny", ("train",), ("crowdhuman",), "odgt", "flip")
  assert registry.register(entry) is entry and registry.get("tiny") is entry and registry.names()[-1] == "tiny"
  with pytest.raises(ValueError, match="'tiny' is registered twice"):
    registry.register(entry)
  with pytest.raises(ValueError, match="builder must be 'module:Class', got 'data_pipelines.tiny'"):
    registry.register(registry.DataSet("t2", "data_pipelines.tiny", ("train",), ("crowdhuman",), "odgt", "flip"))
  with pytest.raises(ValueError, match="augment must be one of"):
    registry.register(registry.DataSet("t3", "m:C", ("train",), ("crowdhuman",), "odgt", "mosaic"))


def test_builder_classes_are_imported_on_demand():
  # Importing the registry loads neither TensorFlow nor TFDS; asking for a builder class does.
  code = ("import sys; from data_pipelines import registry; "
          "assert not [m for m in sys.modules if m.startswith(('tensorflow', 'tensorflow_datasets'))]; "
          "names = [registry.builder_class(n).__name__ for n in registry.names()]; "
          "assert names == ['Crowdhuman', 'Citypersons', 'SyntheticCrowds', 'Caltech'], names; "
          "assert 'tensorflow_datasets' in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_prepared_from_manual_files_or_built_on_first_use():
  pytest.importorskip("tensorflow_datasets")
  from data_pipelines import prepare
  assert prepare.prepared_names() == ("crowdhuman", "citypersons", "caltech")
  assert callable(registry.builder_class("synthetic_crowds").from_data_config)


@pytest.mark.parametrize("name,given,want", [
    ("crowdhuman", None, "flip"), ("citypersons", None, "alfnet"), ("synthetic_crowds", None, "flip"),
    ("synthetic_crowds", "alfnet", "alfnet"), ("citypersons", "flip", "flip"), ("caltech", None, "flip"),
    ("caltech", "alfnet", "alfnet")])
def test_augment_resolution(name, given, want):
  cfg = ml_collections.ConfigDict({"name": name, "augment": given})
  assert registry.augment(cfg) == want
  assert registry.augment(ml_collections.ConfigDict({"name": name})) == registry.get(name).augment  # no field
  with pytest.raises(ValueError, match=f"or None: {name}'s default"):
    registry.augment(ml_collections.ConfigDict({"name": name, "augment": "jitter"}))
