"""Model presets and loading any causal LM through one function."""

from __future__ import annotations

import pytest
import torch

from factacq.errors import FactacqError
from factacq.models import PRESETS, build_model, count_parameters, load_model
from factacq.params import ModelParams


def test_presets_have_the_intended_sizes():
    sizes = {}
    for name in ("mini", "tiny", "small", "base"):
        with torch.device("meta"):
            sizes[name] = count_parameters(build_model(ModelParams(preset=name), 4096, 128))
    assert 0.4e6 <= sizes["mini"] <= 0.7e6
    assert 1.0e6 <= sizes["tiny"] <= 2.0e6
    assert 4.0e6 <= sizes["small"] <= 8.0e6
    assert 20e6 <= sizes["base"] <= 30e6
    assert set(PRESETS) == {"micro", "mini", "tiny", "small", "base"}


def test_local_hf_folder_loads_through_load_model(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelParams(preset="micro"), 300, 32, eos_token_id=0)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    loaded = load_model(tmp_path / "m")
    ids = torch.randint(0, 300, (2, 16))
    with torch.no_grad():
        assert torch.equal(model.eval()(ids).logits, loaded.eval()(ids).logits)
    assert type(loaded).__name__ == "OlmoForCausalLM"
    assert load_model(tmp_path / "m", dtype="bfloat16").dtype == torch.bfloat16


def test_load_model_errors_are_one_line(tmp_path):
    with pytest.raises(FactacqError, match="cannot load") as info:
        load_model(tmp_path / "missing-model")
    assert "\n" not in str(info.value)
