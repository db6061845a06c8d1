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


def test_fields_added_later_enter_the_hash_only_when_set():
    # the hash of the defaults is the one recorded before optim.decay_fraction and
    # probe.window_points existed (cached bases and finished runs keep their keys)
    assert Params().section_hash("optim") == "d802ac0ab50d"
    assert Params().section_hash("probe") == "2305bf481faa"
    assert parse_params({"optim": {"decay_fraction": 0.5}}).section_hash("optim") != \
        Params().section_hash("optim")
    assert parse_params({"probe": {"window_points": 12}}).section_hash("probe") != \
        Params().section_hash("probe")


def test_added_fields_name_fields_that_exist_nested_ones_too():
    from factacq.params import ADDED_FIELDS

    for *where, name in ADDED_FIELDS:
        model = Params()
        for key in where:
            model = getattr(model, key)
        assert name in type(model).model_fields, (where, name)
    # a nested field set to its default leaves the hash alone; another value changes it
    same = parse_params({"inject": {"duplicate": {"align": "start", "span": None}}})
    assert same.section_hash() == Params().section_hash()
    assert parse_params({"inject": {"duplicate": {"align": "end"}}}).section_hash() != \
        Params().section_hash()


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


def test_env_folders_replace_only_the_default_cache_and_output_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTACQ_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("FACTACQ_OUTPUT_DIR", str(tmp_path / "o"))
    (tmp_path / "left_out.yaml").write_text("name: a\n")
    (tmp_path / "written_out.yaml").write_text("cache_dir: .cache\noutput_dir: outputs\n")  # a dumped params.yaml
    (tmp_path / "own.yaml").write_text("cache_dir: mine/cache\noutput_dir: mine/out\n")
    for name in ("left_out", "written_out"):
        p = load_params(tmp_path / f"{name}.yaml")
        assert (p.cache_dir, p.output_dir) == (str(tmp_path / "c"), str(tmp_path / "o")), name
    p = load_params(tmp_path / "own.yaml")
    assert (p.cache_dir, p.output_dir) == ("mine/cache", "mine/out")  # a file's own folders are kept
    monkeypatch.setenv("FACTACQ_CACHE_DIR", "")
    monkeypatch.delenv("FACTACQ_OUTPUT_DIR")
    p = load_params(tmp_path / "left_out.yaml")
    assert (p.cache_dir, p.output_dir) == (".cache", "outputs")  # unset or empty: the defaults
    assert Params().cache_dir == ".cache"  # the schema itself is unchanged


def test_the_test_session_writes_to_a_temporary_folder():
    """conftest.py points both folders outside the project before any test or notebook runs."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for variable in ("FACTACQ_CACHE_DIR", "FACTACQ_OUTPUT_DIR"):
        folder = Path(os.environ[variable]).resolve()
        assert root not in folder.parents and folder != root, (variable, folder)
