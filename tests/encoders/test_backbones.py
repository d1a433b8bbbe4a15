"""The backbone registry: listing, unknown names, the hub path (with tiny local models), offline encoders."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from claspkit.constants import BACKBONE_ROLES, BACKBONES
from claspkit.encoders import _common, _hub, _image, _registry, backbones as B
from claspkit.errors import AudioError, BackboneError, ParamError
from nbval_platform import simd_level

SR = 16000


def noise(seconds, seed=0, amp=0.1):
    return (amp * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


def cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ---------------------------------------------------------------- registry
def test_import_is_cheap():
    code = ("import sys, claspkit.encoders.backbones; "
            "heavy = [m for m in ('torch', 'transformers', 'ctranslate2', 'sentence_transformers') "
            "if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_listing():
    rows = B.list_backbones()
    assert {r["role"] for r in rows} == set(BACKBONE_ROLES)
    assert all(set(r) == {"role", "name", "dim", "source", "pooling", "description"} for r in rows)
    by = {(r["role"], r["name"]): r for r in rows}
    dims = {("speech", "whisper-tiny.en"): 384, ("speech", "whisper-base"): 512,
            ("speech", "hubert-large-ls960-ft"): 1024, ("speech", "wav2vec2-base-960h"): 768,
            ("image", "efficientnet-lite0"): 1280, ("image", "efficientnet_b7"): 1000,
            ("image", "efficientnet_b7-pooled"): 2560, ("text", "e5-small-multilingual"): 384,
            ("text", "muse-multilingual"): 512, ("text", "minilm-en"): 384, ("text", "labse"): 768,
            ("text", "xlmr-paraphrase"): 768}
    for key, dim in dims.items():
        assert by[key]["dim"] == dim, key
    offline = {n for (r, n), row in by.items() if row["source"] == "offline"}
    assert offline == {"whisper-tiny.en", "whisper-base", "efficientnet-lite0", "e5-small-multilingual",
                       "muse-multilingual", "minilm-en"}
    assert [r["role"] for r in B.list_backbones("text")] == ["text"] * 6
    assert B.list_backbones("asr")[0]["source"] == "offline"  # offline entries first


def test_unknown_names_list_the_known_ones():
    with pytest.raises(BackboneError, match=r"unknown speech backbone 'hubert' is not one of: .*whisper-tiny\.en"):
        B.create_backbone("speech", "hubert")
    with pytest.raises(BackboneError, match="packaged, work offline: .*e5-small-multilingual"):
        B.create_backbone("text", "bert-base")
    with pytest.raises(BackboneError, match="unknown role 'audio'"):
        B.create_backbone("audio", "whisper-base")
    with pytest.raises(BackboneError, match="unknown role"):
        B.list_backbones("vision")
    with pytest.raises(BackboneError, match="is not one of"):
        B.create_backbone("speech", "st:some/model")  # a prefix of another role


def test_register_a_new_backbone():
    class Dummy(B.Encoder):
        role, dim, name, cache_id, weight_bytes = "text", 3, "dummy", "text/dummy/0/v1", 0

        def __init__(self, scale=1.0):
            self.scale = scale

        def encode(self, texts):
            return np.full((len(texts), 3), self.scale, np.float32)

    try:
        B.register("text", "dummy-test", 3, "offline", "none", "a test entry")(lambda scale=1.0: Dummy(scale))
        enc = B.create_backbone("text", "dummy-test", scale=2.0)
        assert enc.encode(["a"]).tolist() == [[2.0, 2.0, 2.0]]
        assert any(r["name"] == "dummy-test" for r in B.list_backbones("text"))
        with pytest.raises(ParamError, match="does not take that option"):
            B.create_backbone("text", "dummy-test", colour="red")
    finally:
        _registry._REGISTRY.pop(("text", "dummy-test"), None)
    with pytest.raises(BackboneError):
        B.register("vision", "x", 1, "offline", "", "")


def test_the_registry_serves_the_names_config_checks():
    """claspkit.config checks backbone parameters against constants.BACKBONES (data) instead of importing the
    registry: the two must name the same backbones, with the same sources, in the same order."""
    served = {role: {r["name"]: r["source"] for r in B.list_backbones(role)}
              for role in BACKBONE_ROLES}
    in_order = {role: [n for (r, n) in _registry._REGISTRY if r == role] for role in BACKBONE_ROLES}
    assert served == BACKBONES
    assert in_order == {role: list(names) for role, names in BACKBONES.items()}


def test_window_pooling_is_the_mean_over_all_frames():
    waves = [np.ones(70 * SR, np.float32), np.ones(SR, np.float32)]
    wins = _common.windows(waves, SR)
    assert [(i, len(w)) for i, w in wins] == [(0, 30 * SR), (0, 30 * SR), (0, 10 * SR), (1, SR)]
    means = [np.array([1.0, 0.0]), np.array([3.0, 0.0]), np.array([0.0, 6.0]), np.array([5.0, 5.0])]
    out = _common.pool_windows(2, 2, [0, 0, 0, 1], means, [1500, 1500, 500, 50])
    np.testing.assert_allclose(out, [[(1500 + 4500) / 3500, 3000 / 3500], [5.0, 5.0]], rtol=1e-6)


# ---------------------------------------------------------------- the hub path, offline, with tiny models
CONV = dict(conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Randomly initialised tiny transformers / sentence-transformers models saved as local folders."""
    import torch
    from transformers import (BertConfig, BertModel, BertTokenizerFast, HubertConfig, HubertModel,
                              Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    # HuBERT-large style: layer-norm feature encoder, feature extractor returns an attention mask
    HubertModel(HubertConfig(**CONV, feat_extract_norm="layer", do_stable_layer_norm=True)).save_pretrained(
        root / "hubert")
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(root / "hubert")
    # wav2vec2-base style CTC: group norm, no attention mask (so items run one at a time)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: i + 5 for i, c in enumerate("ABCDEFGH")}}
    (root / "vocab.json").write_text(json.dumps(vocab))
    tok = Wav2Vec2CTCTokenizer(str(root / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=False)
    Wav2Vec2ForCTC(Wav2Vec2Config(**CONV, vocab_size=len(vocab), pad_token_id=0)).save_pretrained(root / "w2v")
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(root / "w2v")
    # a sentence-transformers model around a tiny BERT
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "the a cat dog sat on mat le chat".split()
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    BertModel(BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(root / "bert")
    BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(root / "bert")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    tr = Transformer(str(root / "bert"), max_seq_length=32)
    SentenceTransformer(modules=[tr, Pooling(32, pooling_mode="mean")], device="cpu").save(str(root / "st"))
    hf_logging.enable_progress_bar()
    return root


def test_hf_speech_with_attention_mask(tiny):
    enc = B.create_backbone("speech", f"hf:{tiny / 'hubert'}")
    assert (enc.role, enc.dim, enc.sample_rate) == ("speech", 32, SR)
    assert enc.cache_id.startswith("speech/hf:hubert/") and str(tiny) not in enc.cache_id
    assert enc.weight_bytes > 0
    short, long = noise(1.0, 1), noise(3.0, 2)
    both = enc.encode([long, short])
    alone = enc.encode([short])
    assert both.shape == (2, 32) and both.dtype == np.float32
    np.testing.assert_allclose(both[1], alone[0], atol=1e-4)  # padding in the batch is excluded from the mean
    np.testing.assert_array_equal(enc.encode([long, short]), both)  # deterministic


def test_hf_speech_mean_of_valid_frames_matches_a_manual_forward(tiny):
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    enc = B.create_backbone("speech", f"hf:{tiny / 'w2v'}")  # CTC checkpoint loaded as a base model
    x = noise(1.5, 3)
    fe, model = AutoFeatureExtractor.from_pretrained(tiny / "w2v"), AutoModel.from_pretrained(tiny / "w2v").eval()
    with torch.inference_mode():
        want = model(**fe([x], sampling_rate=SR, return_tensors="pt")).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(enc.encode([x])[0], want, atol=1e-5)


def test_hf_speech_long_input_is_windowed(tiny):
    enc = B.create_backbone("speech", f"hf:{tiny / 'hubert'}")
    x = noise(35.0, 4)
    a, b = x[: 30 * SR], x[30 * SR:]
    fa, fb = enc._frames([len(a), len(b)])
    want = (enc.encode([a])[0] * fa + enc.encode([b])[0] * fb) / (fa + fb)
    np.testing.assert_allclose(enc.encode([x])[0], want, atol=1e-5)


def test_hf_ctc_asr(tiny):
    asr = B.create_backbone("asr", f"hf-ctc:{tiny / 'w2v'}")
    assert asr.role == "asr" and asr.weight_bytes > 0 and asr.cache_id.startswith("asr/hf-ctc:w2v/")
    out = asr.transcribe([noise(1.0, 5), noise(0.5, 6)], language="en")
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    assert all(t == t.lower() and "  " not in t for t in out)
    assert asr.transcribe([noise(1.0, 5)]) == out[:1]


def test_st_text(tiny):
    enc = B.create_backbone("text", f"st:{tiny / 'st'}")
    assert enc.dim == 32 and enc.cache_id.startswith("text/st:st/")
    e = enc.encode(["the cat sat on the mat", "le chat", ""])
    assert e.shape == (3, 32) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(enc.encode(["le chat"])[0], e[1], atol=1e-5)
    with pytest.raises(ParamError, match="list of strings"):
        enc.encode("one string")
    with pytest.raises(ParamError, match="text 1 is int"):
        enc.encode(["ok", 3])


def test_cache_id_follows_the_weights(tiny, tmp_path):
    import torch
    from transformers import HubertModel

    a = B.create_backbone("speech", f"hf:{tiny / 'hubert'}")
    copy = tmp_path / "hubert"
    shutil.copytree(tiny / "hubert", copy)
    assert B.create_backbone("speech", f"hf:{copy}").cache_id == a.cache_id  # same files, another folder
    m = HubertModel.from_pretrained(copy)
    with torch.no_grad():
        m.encoder.layers[0].attention.k_proj.weight.add_(0.01)
    m.save_pretrained(copy)
    assert B.create_backbone("speech", f"hf:{copy}").cache_id != a.cache_id


@pytest.mark.parametrize("role, name", [
    ("speech", "hf:claspkit-test/no-such-model"),
    ("text", "st:claspkit-test/no-such-model"),
    ("asr", "hf-ctc:claspkit-test/no-such-model"),
    ("text", "labse"),
    ("speech", "wav2vec2-base-960h"),
])
def test_hub_backbone_without_network(monkeypatch, tmp_path, role, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to fall back on
    with pytest.raises(BackboneError) as e:
        B.create_backbone(role, name)
    msg = str(e.value)
    assert "needs a network" in msg and "local folder" in msg and "tiny, small" in msg


def test_unreachable_hub_fails_fast_without_hf_offline(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(_hub, "host_reachable", lambda url, timeout=3.0: False)
    assert _hub.hf_kwargs("someone/model") == {"local_files_only": True}
    with pytest.raises(BackboneError, match="needs a network"):
        B.create_backbone("speech", "hf:claspkit-test/no-such-model")


def test_torchvision_b7_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(_hub, "host_reachable", lambda url, timeout=3.0: False)
    for name in ("efficientnet_b7", "efficientnet_b7-pooled"):
        with pytest.raises(BackboneError, match=r"needs a network.*packaged image backbones: efficientnet-lite0"):
            B.create_backbone("image", name)


def test_bad_waveforms_are_errors_not_vectors(tiny):
    enc = B.create_backbone("speech", f"hf:{tiny / 'hubert'}")
    with pytest.raises(AudioError, match="input 1 is silent"):
        enc.encode([noise(1.0), np.zeros(SR, np.float32)])
    with pytest.raises(AudioError, match="input 0 contains NaN"):
        enc.encode([np.full(SR, np.nan, np.float32)])
    with pytest.raises(AudioError, match="non-empty 1-D"):
        enc.encode([np.zeros(0, np.float32)])
    with pytest.raises(ParamError, match="list of waveforms"):
        enc.encode(noise(1.0))
    assert enc.encode([]).shape == (0, 32)


# ---------------------------------------------------------------- the packaged offline encoders (slow)
@pytest.fixture(scope="module")
def speech_clips(tmp_path_factory):
    """Two short real speech clips from espeak-ng (the canonical pip build) and their texts."""
    from conftest import espeak_waves

    texts = ["The jury said the city needs new laws for its schools.", "Good morning."]
    return espeak_waves(tmp_path_factory.mktemp("speech"), texts), texts


@pytest.fixture(scope="module")
def isolated_data(tmp_path_factory):
    """whisper-base assembles into data_dir(); keep the real data/ folder out of the tests."""
    mp = pytest.MonkeyPatch()
    data = tmp_path_factory.mktemp("data")
    mp.setenv("CLASPKIT_DATA", str(data))
    yield data
    mp.undo()


@pytest.mark.slow
@pytest.mark.parametrize("name, dim", [("whisper-tiny.en", 384), ("whisper-base", 512)])
def test_whisper_speech(isolated_data, speech_clips, name, dim):
    clips, _ = speech_clips
    enc = B.create_backbone("speech", name)
    assert (enc.dim, enc.sample_rate, enc.weight_bytes > 10_000_000) == (dim, SR, True)
    assert enc.cache_id.startswith(f"speech/{name}/") and enc.cache_id.endswith("-v1")
    out = enc.encode(clips)
    assert out.shape == (2, dim) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(enc.encode(clips[::-1])[::-1], out)  # order / batch independent
    np.testing.assert_array_equal(enc.encode(clips[1:]), out[1:])


@pytest.mark.slow
@pytest.mark.xfail(simd_level() != "avx512", strict=False, reason="whisper-tiny.en's int8 greedy decoding "
                   "mishears espeak on an AVX2-only AMD EPYC (2026-12-05: 'servitude' -> 'served with food'); the "
                   "words asserted were heard on AVX-512 CPUs. Not the quantisation: float32 and int8_float32 mishear "
                   "the same words there (WER 0.29 and 0.31 against int8's 0.31 on the four clips below)")
def test_whisper_tiny_asr(speech_clips):
    clips, texts = speech_clips
    asr = B.create_backbone("asr", "whisper-tiny.en")
    assert asr.weight_bytes == 75537502 and asr.cache_id.startswith("asr/whisper-tiny.en/")
    (text,) = asr.transcribe(clips[:1], language="en")
    words = lambda t: set(t.lower().replace(",", " ").replace(".", " ").split())  # noqa: E731
    assert len(words(text) & words(texts[0])) >= 5, text  # of 10 distinct words; espeak is hard for tiny.en
    with pytest.raises(ParamError, match="English-only"):
        asr.transcribe(clips[1:], language="fr")


@pytest.mark.slow
def test_whisper_word_timestamps_keep_the_text(speech_clips):
    """``transcribe_words`` (for ``claspkit index --transcribe``) hears what ``transcribe`` hears, with each word's
    time inside the clip and in order, under its own cache id."""
    clips, _ = speech_clips
    asr = B.create_backbone("asr", "whisper-tiny.en")
    (plain,) = asr.transcribe(clips[:1])
    (out,) = asr.transcribe_words(clips[:1])
    assert out["text"] == plain and asr.words_cache_id != asr.cache_id
    starts = [s for _, s, _ in out["words"]]
    assert len(out["words"]) == len(plain.split()) and starts == sorted(starts)
    assert all(0 <= s <= e <= len(clips[0]) / SR + 0.05 for _, s, e in out["words"])


@pytest.mark.slow
def test_whisper_scored_transcripts_carry_confidence(speech_clips):
    """``transcribe_scored`` (the pseudo-labels of ``claspkit adapt``) hears what ``transcribe`` hears, and its
    confidence tells speech from noise: white noise never passes the adapt filter, speech passes Whisper's own
    fallback range (tiny.en mishears espeak, so the stricter default -0.6 may rightly reject it)."""
    from claspkit.adapt.pseudo import Confidence

    clips, _ = speech_clips
    asr = B.create_backbone("asr", "whisper-tiny.en")
    noise = (0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    speech, hiss = asr.transcribe_scored([clips[0], noise])
    assert speech["text"] == asr.transcribe(clips[:1])[0] and asr.scored_cache_id != asr.cache_id
    assert -1.5 < speech["avg_logprob"] <= 0 and 0 <= speech["no_speech_prob"] < 0.5
    assert Confidence(min_avg_logprob=-1.5).reason(speech) is None
    assert Confidence().reason(hiss) is not None


@pytest.mark.slow
def test_efficientnet_lite0(speech_clips):
    clips, _ = speech_clips
    enc = B.create_backbone("image", "efficientnet-lite0")
    assert enc.dim == 1280 and enc.images(clips[:1]).shape == (1, 224, 224, 3)
    out = enc.encode(clips)
    assert out.shape == (2, 1280) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(enc.encode(clips), out)  # same batch: bit-identical
    np.testing.assert_allclose(enc.encode(clips[:1]), out[:1], atol=1e-5)  # other batch: float rounding only



@pytest.mark.slow
def test_efficientnet_lite0_onnx_runtime(isolated_data, speech_clips):
    clips, _ = speech_clips
    ref = B.create_backbone("image", "efficientnet-lite0")
    enc = B.create_backbone("image", "efficientnet-lite0", runtime="onnx", threads=1)
    graphs = list((isolated_data / "models" / "onnx").glob("*.onnx"))
    assert len(graphs) == 1                                        # exported once, under data/models/onnx
    out, want = enc.encode(clips), ref.encode(clips)
    assert out.shape == want.shape and out.dtype == np.float32
    assert np.abs(out - want).max() <= 1e-4 * np.abs(want).max()   # the same network, another runtime
    assert enc.cache_id == ref.cache_id + "-ort"                   # never mixed in the feature cache
    graphs[0].write_bytes(graphs[0].read_bytes()[:1000])           # a truncated cached graph is redone
    again = B.create_backbone("image", "efficientnet-lite0", runtime="onnx", threads=1)
    np.testing.assert_array_equal(again.encode(clips), out)
    with pytest.raises(ParamError, match=r"unknown image runtime 'tensorrt'.*onnx.*torch"):
        B.create_backbone("image", "efficientnet-lite0", runtime="tensorrt")

@pytest.mark.slow
@pytest.mark.parametrize("name, dim, langs", [
    ("e5-small-multilingual", 384, ("fr", "de", "zh", "fa")),
    ("muse-multilingual", 512, ("fr", "de", "zh")),
    ("minilm-en", 384, ()),
])
def test_offline_text(name, dim, langs):
    sents = {"en": "The cat is sleeping on the sofa.", "fr": "Le chat dort sur le canapé.",
             "de": "Die Katze schläft auf dem Sofa.", "zh": "猫在沙发上睡觉。", "fa": "گربه روی مبل خوابیده است."}
    other = "Interest rates rose again in the third quarter."
    enc = B.create_backbone("text", name)
    keys = list(sents)
    e = enc.encode([sents[k] for k in keys] + [other, sents["en"] + " Indeed."])
    assert e.shape == (7, dim) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(enc.encode([sents["en"]])[0], e[0], atol=1e-5)
    assert cos(e[0], e[6]) > cos(e[0], e[5])  # a paraphrase beats an unrelated sentence
    for lang in langs:  # a translation is closer to the English original than an unrelated sentence
        assert cos(e[0], e[keys.index(lang)]) > cos(e[0], e[5]), lang


@pytest.mark.slow
def test_torchvision_b7_entries_with_random_weights(monkeypatch):
    """The B7 code path (logits vs pooled, ImageNet normalisation) on a randomly initialised network."""
    import torchvision.models

    net = torchvision.models.efficientnet_b7(weights=None)  # built once: B7 is 66M parameters
    monkeypatch.setattr(torchvision.models, "efficientnet_b7", lambda weights=None: net)
    monkeypatch.setattr(_image, "host_reachable", lambda url, timeout=3.0: True)  # nothing is downloaded
    x = noise(1.0, 9)
    for name, dim in (("efficientnet_b7", 1000), ("efficientnet_b7-pooled", 2560)):
        enc = B.create_backbone("image", name, image_size=64)
        assert enc.dim == dim and enc.mean == (0.485, 0.456, 0.406)
        assert enc.cache_id.startswith(f"image/{name}/c5b4e57e/") and enc.weight_bytes > 200_000_000
        out = enc.encode([x])
        assert out.shape == (1, dim) and np.isfinite(out).all()


def test_bad_local_folders(tmp_path):
    with pytest.raises(BackboneError, match="there is no folder .*check the path"):
        B.create_backbone("speech", f"hf:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match="does not hold a loadable model"):
        B.create_backbone("text", f"st:{tmp_path / 'empty'}")
    with pytest.raises(BackboneError, match="does not hold a loadable model"):
        B.create_backbone("asr", f"hf-ctc:{tmp_path / 'empty'}")


@pytest.mark.parametrize("preset, expected", [(None, "AVX2"), ("AVX512", "AVX512")])
def test_ctranslate2_kernels_are_pinned_to_avx2_unless_the_user_says_otherwise(preset, expected):
    """CT2's AVX-512 and AVX2 int8 kernels give different Whisper features: claspkit pins one."""
    env = {k: v for k, v in os.environ.items() if k != "CT2_FORCE_CPU_ISA"}
    if preset:
        env["CT2_FORCE_CPU_ISA"] = preset
    code = "import os, claspkit; print(os.environ['CT2_FORCE_CPU_ISA'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
