import pytest

from factacq.errors import FactacqError
from factacq.params import Params, load_params, parse_params


def test_defaults_validate():
    p = Params()
    assert p.probe.window == 50 and p.analysis.iqr_factor == 1.5


def test_unknown_key_names_file_and_field(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("pretrain:\n  stepz: 3\n")
    with pytest.raises(FactacqError, match=r"p.yaml: unknown key 'pretrain.stepz'"):
        load_params(f)


def test_bad_value_names_field_and_value(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("probe:\n  window: -4\n")
    with pytest.raises(FactacqError, match=r"field 'probe.window'.*-4"):
        load_params(f)


def test_stage_outside_pretraining_is_refused():
    with pytest.raises(FactacqError, match="stage 'late' at step 50 is outside 1..10"):
        parse_params({"pretrain": {"steps": 10, "stages": {"late": 50}}})


def test_missing_file(tmp_path):
    with pytest.raises(FactacqError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_hash_is_stable_and_section_specific():
    a, b = Params(), parse_params({"probe": {"window": 10}})
    assert a.section_hash("pretrain") == b.section_hash("pretrain")
    assert a.section_hash() != b.section_hash()


def test_extends_merges_over_the_parent(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\npretrain:\n  steps: 40\n  stages: {late: 40}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\npretrain:\n  batch_size: 4\n")
    p = load_params(tmp_path / "child.yaml")
    assert (p.name, p.pretrain.steps, p.pretrain.batch_size) == ("child", 40, 4)


def test_extends_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(FactacqError, match="'extends' makes a cycle"):
        load_params(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(FactacqError, match=r"missing.yaml: params file not found \(extended by .*c.yaml\)"):
        load_params(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(FactacqError, match="top level must be a mapping"):
        load_params(tmp_path / "d.yaml")
