"""Stage-4 inputs: the text-encoder sanity table, hub translation (tiny local models), the query table."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from claspkit.evaluation import multilingual as ml
from claspkit.config import load_params
from claspkit.errors import BackboneError, ParamError


class BagOfMeanings:
    """A fake multilingual text encoder: words map to meaning ids shared across languages."""
    name, role, dim, cache_id = "bag", "text", 6, "bag-v1"
    LEX = {"cat": 0, "chat": 0, "katze": 0, "dog": 1, "chien": 1, "hund": 1, "sun": 2, "soleil": 2, "sonne": 2,
           "rain": 3, "pluie": 3, "regen": 3}

    def encode(self, texts):
        out = np.full((len(texts), self.dim), 0.05, np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                if w in self.LEX:
                    out[i, self.LEX[w]] += 1
        return out


PARALLEL = pd.DataFrame({"id": ["a", "b", "c", "d"], "en": ["cat", "dog", "sun", "rain"],
                         "fr": ["chat", "chien", "soleil", "pluie"], "de": ["hund", "katze", "sonne", "regen"]})


def test_translation_sanity_measures_closeness_to_the_original():
    t = ml.translation_sanity(BagOfMeanings(), PARALLEL, ["fr", "de", "en"]).set_index("lang")
    assert list(t.index) == ["fr", "de"]  # English against itself is skipped
    assert t.loc["fr", "top1"] == 1.0 and t.loc["fr", "margin"] > 0.5
    assert t.loc["fr", "cos_translation"] > t.loc["fr", "cos_unrelated"]
    # the German column swaps cat and dog: half the items find the wrong original
    assert t.loc["de", "top1"] == 0.5 and t.loc["de", "chance"] == 0.25
    assert t.loc["de", "cos_translation"] < t.loc["fr", "cos_translation"]


def test_translation_sanity_errors():
    with pytest.raises(ParamError, match="no column"):
        ml.translation_sanity(BagOfMeanings(), PARALLEL, ["zh"])
    with pytest.raises(ParamError, match="at least 2"):
        ml.translation_sanity(BagOfMeanings(), PARALLEL.head(1), ["fr"])


def test_small100_is_refused_with_the_id_that_works(tmp_path):
    with pytest.raises(BackboneError, match="tokenization_small100.py") as err:
        ml.translate_hub(["hello"], "de", model_id="alirezamsh/small100", cache=False)
    assert ml.WORKING_MODEL in str(err.value) and "udhr" in str(err.value)
    local = tmp_path / "my-copy"
    local.mkdir()
    (local / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "SMALL100Tokenizer"}))
    with pytest.raises(BackboneError, match="SMALL-100"):
        ml.translate_hub(["hello"], "de", model_id=str(local), cache=False)


def test_unreachable_model_says_network_or_local_path_and_udhr(monkeypatch):
    with pytest.raises(BackboneError, match="network") as err:
        ml.translate_hub(["hello"], "de", model_id="no-such-org/no-such-model", local_files_only=True, cache=False)
    assert "local folder" in str(err.value) and "translation_source='udhr'" in str(err.value)
    # without the flag and no hub in reach it fails fast (no retries); tests never touch the network
    monkeypatch.setattr(ml, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(BackboneError, match="translation_source='udhr'"):
        ml.translate_hub(["hello"], "de", model_id="no-such-org/no-such-model", cache=False)


# ------------------------------------------------------------------ real transformers path, tiny models

WORDS = ["<pad>", "</s>", "<unk>", "hello", "world", "the", "cat", "__en__", "__de__", "__fr__", ">>fra<<", ">>deu<<"]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A randomly initialised M2M-100 and Marian, saved like hub checkpoints (no network, no sentencepiece)."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, MarianConfig, MarianMTModel

    root = tmp_path_factory.mktemp("mt")
    small = dict(vocab_size=len(WORDS), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                 pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    paths = {}
    for name, model in (("m2m", M2M100ForConditionalGeneration(M2M100Config(**small, decoder_start_token_id=1,
                                                                               bos_token_id=0))),
                        ("marian", MarianMTModel(MarianConfig(**small, decoder_start_token_id=0)))):
        paths[name] = root / name
        model.save_pretrained(paths[name])
        _tokenizer().save_pretrained(paths[name])
    return paths


def test_target_spec_per_model_family(tiny_models):
    tok = _tokenizer()
    assert ml.target_spec(tok, "de") == ("forced_bos", WORDS.index("__de__"))
    vocab_marian = [w for w in WORDS if not w.startswith("__")]
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    marian = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(
        {w: i for i, w in enumerate(vocab_marian)}, unk_token="<unk>")), unk_token="<unk>")
    assert ml.target_spec(marian, "fr") == ("prefix", ">>fra<<")
    assert ml.target_spec(marian, "zh") == (None, None)  # a single-pair model: no way to choose


def test_translate_hub_real_path_forces_the_target_language(tiny_models, tmp_path):
    texts = ["hello world", "the cat", "hello world"]
    out = ml.translate_hub(texts, "de", model_id=str(tiny_models["m2m"]), cache=tmp_path / "tr", batch_size=2,
                           max_new_tokens=4)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert out[0] == out[2]  # deterministic, one translation per distinct text
    # the lang tokens are ordinary words in this tiny vocabulary, so the forced BOS shows in the text
    assert all(t.split()[0] == "__de__" for t in out)
    assert ml.translate_hub(["hello world"], "fr", model_id=str(tiny_models["m2m"]), cache=False,
                            max_new_tokens=2)[0].split()[0] == "__fr__"
    # the cache answers a rerun without the model
    (cache_file,) = (tmp_path / "tr").glob("*.json")
    assert len(json.loads(cache_file.read_text())) == 2
    ml._load_translator.cache_clear()
    again = ml.translate_hub(texts, "de", model_id=str(tiny_models["m2m"]), cache=tmp_path / "tr", batch_size=2,
                             max_new_tokens=4)
    assert again == out and ml._load_translator.cache_info().misses == 0
    marian = ml.translate_hub(["the cat"], "fr", model_id=str(tiny_models["marian"]), cache=False, max_new_tokens=3)
    assert len(marian) == 1 and isinstance(marian[0], str)


# ------------------------------------------------------------------ the query table

def test_build_queries_from_udhr(monkeypatch, tmp_path):
    from claspkit.data import udhr

    d = tmp_path / "declaration"
    d.mkdir()
    for code, paras in {"eng": ["All are free.", "Everyone is entitled."], "fra": ["Tous libres.", "Chacun a droit."],
                        "deu_1996": ["Alle frei.", "Jeder hat Anspruch."]}.items():
        arts = "".join(f'<article data-number="{i + 1}"><p>{p}</p></article>' for i, p in enumerate(paras))
        (d / f"{code}.html").write_text(f"<html><body>{arts}</body></html>", encoding="utf-8")
    monkeypatch.setattr(udhr, "udhr_dir", lambda: d)
    P = load_params("tiny", languages=["de", "fr"], translation_source="udhr")
    q = ml.build_multilingual_queries(P)
    assert list(q.columns) == ["id", "text", "de", "fr"]
    assert q.text.tolist() == ["All are free.", "Everyone is entitled."]
    assert q.fr.tolist() == ["Tous libres.", "Chacun a droit."]
    assert "udhr" in q.attrs["source"] and "human" in q.attrs["source"]


def test_build_queries_from_hub_translates_the_english_rows():
    P = load_params("tiny", languages=["fa", "zh"], translation_source="hub",
                    translation_model="facebook/m2m100_418M")
    english = pd.DataFrame({"id": ["s1", "s2"], "text": ["One.", "Two."], "split": "test"})
    calls = []

    def fake_translate(texts, lang):
        calls.append(lang)
        return [f"{lang}:{t}" for t in texts]

    q = ml.build_multilingual_queries(P, english=english, translate=fake_translate)
    assert calls == ["fa", "zh"] and q.fa.tolist() == ["fa:One.", "fa:Two."] and q.id.tolist() == ["s1", "s2"]
    assert "facebook/m2m100_418M" in q.attrs["source"]
    with pytest.raises(ParamError, match="besides English"):
        ml.build_multilingual_queries(load_params("tiny", languages=["en"]))


def test_synthesize_parallel_speech_in_each_language(monkeypatch, tmp_path):
    import soundfile as sf

    monkeypatch.setenv("CLASPKIT_DATA", str(tmp_path / "data"))
    q = pd.DataFrame({"id": ["udhr-a01"], "text": ["All human beings are born free."],
                      "fa": ["تمام افراد بشر آزاد به دنیا می‌آیند."], "zh": ["人人生而自由。"]})
    out = ml.synthesize_parallel_speech(q, ["en", "fa", "zh"], workers=1, progress=False)
    assert out.lang.tolist() == ["en", "fa", "zh"] and out.voice.tolist() == ["espeak:en-us", "espeak:fa", "espeak:cmn"]
    assert (out.duration_s > 0.5).all() and out.path.nunique() == 3
    for rel in out.path:
        audio, sr = sf.read(tmp_path / "data" / rel)
        assert sr == 16000 and audio.ndim == 1
    with pytest.raises(ParamError, match="no text for"):
        ml.synthesize_parallel_speech(q, ["de"], workers=1, progress=False)
    with pytest.raises(ParamError, match="no default voice"):
        ml.speech_voice("xx")
    assert ml.speech_voice("de", {"de": "espeak:de+f2"}) == "espeak:de+f2"
