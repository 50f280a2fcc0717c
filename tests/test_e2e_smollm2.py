"""One end-to-end STaR run on the real embedded SmolLM2-135M (small sizes: about a minute on 2 CPU cores)."""

import json

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from star_kit.cli import main
from star_kit.store import read_jsonl

pytestmark = pytest.mark.slow


def test_star_run_on_smollm2(smollm2, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--task", "arithmetic", "--model", "smollm2-135m", "--iterations", "1",
                 "--train-size", "16", "--eval-size", "8", "--base-steps", "3", "--task-opt", "digits=1-2",
                 "--trainer-opt", "per_device_train_batch_size=4", "--out", str(out), "--no-progress"])
    assert code == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1]
    base, it1 = rows
    # SmolLM2 follows the few-shot rationale on one- and two-digit sums often enough to keep some.
    assert 0.0 < base["accuracy"] <= 1.0
    assert it1["kept"] > 0 and it1["sampled"] == 16
    assert it1["rationalization_attempts"] == 16 - it1["kept"]
    assert it1["train_examples"] >= it1["kept"] and it1["steps"] == 3
    assert set(it1["seconds"]) == {"sample", "rationalize", "train", "evaluate"}
    train = read_jsonl(out / "iter_01" / "train.jsonl")
    assert len(train) == it1["train_examples"]
    sources = {t["source"] for t in train}
    assert "sampled" in sources
    for t in train:
        assert "Hint" not in t["prompt"] + t["completion"]
        assert t["completion"].rstrip().endswith(".")
    for s in read_jsonl(out / "iter_01" / "samples.jsonl"):
        assert set(s) >= {"example_id", "completion", "predicted", "correct"}
        assert s["correct"] == (s["predicted"] == s["gold"])
    ev = json.loads((out / "iter_01" / "eval.json").read_text())
    assert ev["n"] == 8 and ev["accuracy"] == it1["accuracy"]
    model = AutoModelForCausalLM.from_pretrained(out / "iter_01" / "checkpoint")
    assert model.num_parameters() > 100_000_000
    assert "accuracy" in capsys.readouterr().out


def test_model_resolver(smollm2, tmp_path):
    from star_kit.errors import UnknownNameError
    from star_kit.models import resolve_model

    assert resolve_model("smollm2-135m") == smollm2  # cached, not converted again
    assert resolve_model(smollm2) == smollm2  # a local folder
    with pytest.raises(UnknownNameError, match="smollm2-135m"):
        resolve_model(str(tmp_path))  # a folder with no model in it
    with pytest.raises(UnknownNameError):
        resolve_model("not-an-org/not-a-model-xyz")
    # config.json alone (a copy that lost its files): one line from the sampler, not transformers' word about
    # sentencepiece
    import shutil

    from star_kit.errors import StarKitError
    from star_kit.registry import load_registry

    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(Path(smollm2) / "config.json", half / "config.json")
    assert resolve_model(str(half)) == str(half.resolve())  # a folder with config.json: the loader decides
    with pytest.raises(StarKitError, match=r"sampler 'hf': model folder .*half: no weights \(\*\.safetensors or "
                                           r"pytorch_model\*\.bin\) and no tokenizer \(tokenizer\.json, "
                                           r"tokenizer\.model, or vocab\.json with merges\.txt\) beside its "
                                           r"config\.json"):
        load_registry().create("samplers", "hf", str(half))
    for f in Path(smollm2).iterdir():
        if f.name.startswith("tokenizer"):
            shutil.copy(f, half / f.name)
    with pytest.raises(StarKitError, match=r"half: no weights \(.*\) beside its config\.json$"):
        load_registry().create("samplers", "hf", str(half))
