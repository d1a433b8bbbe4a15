"""Frame features for the attention head: pooling, the ragged container, the cache, the encoders,
the pipeline hook and search with an attention checkpoint. Synthetic audio only (tones and noise)."""
import numpy as np
import pytest
import soundfile as sf
import torch

from claspkit.errors import BackboneError, ClaspkitError, ParamError
from claspkit.encoders.features import FeatureCache, extract_audio, extract_frames, extract_manifest_features
from claspkit.encoders.frames import Frames, as_frames, frame_bytes, item_bytes, pool_time
from fakes import SR, FakeFrameEncoder, FakeImage, FakeText, attention_checkpoint, fake_factory, fake_manifest, tone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASPKIT_DATA", str(tmp_path / "data"))
    return FeatureCache(tmp_path / "cache")


@pytest.fixture
def wavs(tmp_path):
    folder = tmp_path / "wavs"
    folder.mkdir()
    out = []
    for i, seconds in enumerate([0.5, 1.3, 0.9, 2.1, 0.3]):
        sf.write(folder / f"c{i}.wav", tone(seconds, 200 + 50 * i, i), SR, subtype="PCM_16")
        out.append(folder / f"c{i}.wav")
    return out


# ------------------------------------------------------------------ pooling and the ragged container
def test_pool_time_averages_groups_and_keeps_a_short_tail():
    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    got = pool_time(x, 3)
    np.testing.assert_allclose(got, [x[0:3].mean(0), x[3:6].mean(0), x[6:7].mean(0)])
    assert pool_time(x, 1).tolist() == x.tolist() and pool_time(x, 10).shape == (1, 2)


def test_frames_store_float16_index_pad_and_count_bytes():
    rng = np.random.default_rng(0)
    items = [rng.normal(size=(t, 3)).astype(np.float32) for t in (4, 1, 6)]
    f = Frames(items, pool=4)
    assert len(f) == 3 and f.dim == 3 and f.lengths.tolist() == [4, 1, 6]
    assert f[0].dtype == np.float16 and np.array_equal(f[0], items[0].astype(np.float16))
    sub = f[np.array([2, 0])]
    assert isinstance(sub, Frames) and sub.lengths.tolist() == [6, 4] and sub.pool == 4
    assert f[1:].lengths.tolist() == [1, 6] and f[np.array([True, False, True])].lengths.tolist() == [4, 6]
    x, lengths = f.pad([1, 0])
    assert x.shape == (2, 4, 3) and x.dtype == np.float32 and lengths.tolist() == [1, 4]
    assert np.array_equal(x[0, :1], f[1].astype(np.float32)) and not x[0, 1:].any()
    assert f.nbytes == 11 * 3 * 2 and f.bytes_per_item() == pytest.approx(22)
    assert as_frames(f) is f and as_frames(items).lengths.tolist() == [4, 1, 6]


@pytest.mark.parametrize("items,match", [
    ([np.zeros(3)], "shape"), ([np.zeros((0, 3))], "shape"),
    ([np.full((2, 3), np.nan)], "NaN"), ([np.full((2, 3), 1e6)], "float16"),
    ([np.zeros((2, 3)), np.zeros((2, 4))], "dimension"),
])
def test_frames_refuse_bad_items(items, match):
    with pytest.raises(ParamError, match=match):
        Frames(items)


def test_a_dense_array_is_not_taken_for_frames():
    with pytest.raises(ParamError, match="mean-pooled"):
        as_frames(np.zeros((5, 8), np.float32))


def test_bytes_per_item_is_the_size_of_the_cache_file(cache):
    x = np.ones((69, 512), np.float16)
    cache.put("c", "ab" + "0" * 62, x, frames=True)
    assert cache.path("c", "ab" + "0" * 62).stat().st_size == item_bytes(69, 512) == 128 + 69 * 512 * 2
    # whisper-base, 5.5 s: 276 valid 20 ms frames -> 69 steps of 80 ms, 512-d float16
    from claspkit.encoders.backbones import whisper_frame_count

    assert whisper_frame_count(int(5.5 * SR)) == 69 and frame_bytes(5.5, 512) == 70_784
    assert whisper_frame_count(int(5.5 * SR), pool=1) == 276
    assert whisper_frame_count(40 * SR) == 375 + 125           # a 30 s window + a 10 s one


# ------------------------------------------------------------------ the cache
def test_frame_entries_round_trip_and_damaged_ones_are_refused(cache):
    key, x = "cd" + "1" * 62, np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    cache.put("fid", key, x, frames=True)
    got = cache.get("fid", key, 3, frames=True)
    assert got.dtype == np.float16 and np.array_equal(got, x.astype(np.float16))
    assert cache.get("fid", key, 4, frames=True) is None                  # wrong dim: deleted
    cache.put("fid", key, x, frames=True)
    path = cache.path("fid", key)
    good = path.read_bytes()
    for bad in (good[:-2], good + b"\0\0", good.replace(b"<f2", b"<f4"), b"junk", b""):
        path.write_bytes(bad)
        assert cache.get("fid", key, 3, frames=True) is None and not path.exists()
    cache.put("fid", key, x, frames=True)
    assert cache.get("fid", key, 3) is None                               # not a mean vector
    cache.put("fid", key, x, frames=True)
    assert cache.verify("fid", 3, frames=True) == {"ok": 1, "removed_bad": 0, "removed_tmp": 0}
    with pytest.raises(ClaspkitError, match="float16"):
        cache.put("fid", key, np.full((2, 3), 1e6), frames=True)


def test_extract_frames_caches_apart_from_means_and_resumes(wavs, cache):
    enc = FakeFrameEncoder()
    F1, st = extract_frames(enc, wavs + [wavs[1]], cache=cache, batch_size=2, progress=False, return_stats=True)
    assert isinstance(F1, Frames) and len(F1) == 6 and F1.pool == 4 and F1.dim == 6
    assert st.n_computed == 5 and sum(enc.calls) == 5                     # the duplicate is computed once
    from claspkit.data.audio import load_audio

    for p, f in zip(wavs, F1.items):
        np.testing.assert_array_equal(f, FakeFrameEncoder().encode_frames([load_audio(p)])[0].astype(np.float16))
    assert np.array_equal(F1[5], F1[1])
    F2 = extract_frames(enc, wavs, cache=cache, progress=False)
    assert sum(enc.calls) == 5 and all(np.array_equal(a, b) for a, b in zip(F1.items, F2.items))
    assert sorted(p.parent.parent.name for p in cache.root.rglob("*.npy"))[0].startswith("fake-frames-frames")
    extract_audio(enc, wavs, cache=cache, progress=False)                 # the means: their own folder
    assert len({p.parent.parent for p in cache.root.rglob("*.npy")}) == 2
    sf.write(wavs[0], tone(0.7, 999), SR)                                 # changed content: recomputed
    before = sum(enc.calls)
    extract_frames(enc, wavs, cache=cache, progress=False)
    assert sum(enc.calls) - before == 1


class OnePassEncoder(FakeFrameEncoder):
    """A backbone that gives both views from one pass, as the Whisper and transformers encoders do."""

    def encode_frames_and_means(self, waves):
        frames = self.encode_frames(waves)
        return frames, np.stack([f.mean(0) for f in frames])


def test_a_frames_pass_also_caches_the_means_of_the_same_pass(wavs, cache, tmp_path):
    enc = OnePassEncoder()
    extract_frames(enc, wavs, cache=cache, batch_size=2, progress=False)
    assert sum(enc.calls) == len(wavs)
    means, st = extract_audio(enc, wavs, cache=cache, progress=False, return_stats=True)
    assert st.n_computed == 0 and st.n_reused == len(wavs) and sum(enc.calls) == len(wavs)   # no second pass
    alone = extract_audio(FakeFrameEncoder(), wavs, cache=FeatureCache(tmp_path / "other"), progress=False)
    np.testing.assert_array_equal(means, alone)                           # the bytes a means pass writes


def test_extract_frames_names_files_whose_frames_overflow_float16(wavs, cache):
    with pytest.raises(ClaspkitError, match="c0.wav.*non-finite"):
        extract_frames(FakeFrameEncoder(scale=1e6), wavs[:1], cache=cache, progress=False)
    with pytest.raises(BackboneError, match="frame features"):
        extract_frames(type("Mean", (), {"name": "m", "dim": 3})(), wavs, cache=cache)


# ------------------------------------------------------------------ the real encoders
@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CLASPKIT_DATA", str(tmp_path_factory.mktemp("data")))
    from claspkit.encoders.backbones import create_backbone

    yield create_backbone("speech", "whisper-tiny.en", threads=1)
    mp.undo()


@pytest.mark.slow
def test_whisper_frames_are_valid_only_batch_independent_and_windowed(whisper):
    from claspkit.encoders.backbones import whisper_frame_count

    clips = [tone(1.7, 300, 1), tone(0.6, 500, 2), tone(31.2, 200, 3), tone(3.05, 250, 4)]
    frames = whisper.encode_frames(clips)
    assert [f.shape for f in frames] == [(whisper_frame_count(len(c)), 384) for c in clips]
    assert all(f.dtype == np.float32 and np.isfinite(f).all() for f in frames)
    for i, c in enumerate(clips):                                         # alone == inside a padded batch
        np.testing.assert_array_equal(whisper.encode_frames([c])[0], frames[i])
    np.testing.assert_array_equal(whisper.encode_frames(clips[::-1])[::-1][0], frames[0])
    assert whisper.frames_cache_id != whisper.cache_id and "pool4" in whisper.frames_cache_id
    assert whisper.encode_frames([]) == []
    both_frames, both_means = whisper.encode_frames_and_means(clips)        # one pass, both views, bit for bit
    assert all(np.array_equal(a, b) for a, b in zip(both_frames, frames))
    np.testing.assert_array_equal(both_means, whisper.encode(clips))
    # unpooled, the valid frames average to exactly the mean-pooled embedding
    from claspkit.encoders.backbones import create_backbone

    raw = create_backbone("speech", "whisper-tiny.en", frame_pool=1, threads=1)
    means = whisper.encode(clips[:2] + clips[3:])
    for f, m in zip(raw.encode_frames(clips[:2] + clips[3:]), means):
        np.testing.assert_allclose(f.mean(0), m, rtol=1e-5, atol=1e-6)
    with pytest.raises(ParamError, match="frame_pool"):
        create_backbone("speech", "whisper-tiny.en", frame_pool=0)


def test_hf_speech_frames_match_its_mean_and_ignore_the_batch(tmp_path):
    """A tiny random wav2vec2 saved locally: the hf: path without a network."""
    transformers = pytest.importorskip("transformers")
    from claspkit.encoders.backbones import create_backbone

    torch.manual_seed(0)
    cfg = transformers.Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32, conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2),
                                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                                      feat_extract_norm="layer", do_stable_layer_norm=True)
    transformers.Wav2Vec2Model(cfg).save_pretrained(tmp_path / "w2v")
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(tmp_path / "w2v")
    enc = create_backbone("speech", f"hf:{tmp_path / 'w2v'}")
    clips = [tone(s, 300 + 50 * i, i) for i, s in enumerate([0.5, 0.2, 1.0])]
    frames = enc.encode_frames(clips)
    assert [f.shape for f in frames] == [(200, 16), (80, 16), (400, 16)]   # 10x conv stride, pooled 4x
    for c, f in zip(clips, frames):
        np.testing.assert_allclose(enc.encode_frames([c])[0], f, atol=1e-5)
    raw = create_backbone("speech", f"hf:{tmp_path / 'w2v'}", frame_pool=1)
    for f, m in zip(raw.encode_frames(clips), enc.encode(clips)):
        np.testing.assert_allclose(f.mean(0), m, atol=1e-5)
    assert enc.frames_cache_id.endswith("-frames-pool4-f16-v1") and enc.cache_id.endswith("-mean-v1")
    both_frames, both_means = enc.encode_frames_and_means(clips)          # one pass == the two calls, bitwise
    assert all(np.array_equal(a, b) for a, b in zip(both_frames, frames))
    np.testing.assert_array_equal(both_means, enc.encode(clips))


# ------------------------------------------------------------------ the pipeline hook
def test_frame_features_train_and_evaluate_an_attention_head(tmp_path, monkeypatch):
    from claspkit.experiments import pipeline
    from claspkit.encoders import backbones
    from claspkit.config import load_params

    manifest = fake_manifest(tmp_path, monkeypatch)
    made = {}
    monkeypatch.setattr(backbones, "create_backbone", fake_factory(made))
    P = load_params("tiny", epochs=3, batch_size=8, bootstrap=20, attention_dim=16, attention_heads=2)
    feats = pipeline.frame_features(P, manifest, progress=False)
    assert made["speech"] == {"frame_pool": 4} and isinstance(feats["speech"], Frames)
    assert feats["image"].shape == (36, 5) and feats["text"].shape == (36, 8)
    data = pipeline.split_data(manifest, feats)
    assert isinstance(data["train"].arrays["speech"], Frames) and len(data["train"].arrays["speech"]) == 24
    t = pipeline.fit(P, data, "att", fusion="attention", progress=False)
    assert t.config["fusion"] == "attention" and t.config["frame_pool"] == 4 and t.config["attention_dim"] == 16
    rows = pipeline.evaluate(P, t, data["test"], stage="x", system="attention", protocols=("full",))
    assert {r["fusion"] for r in rows} == {"attention"} and all(0 <= r["mrr"] <= 1 for r in rows)
    assert pipeline.fit(P, data, "att", fusion="attention", progress=False).reused
    # the frames are part of the run's identity
    data["train"].arrays["speech"].items[0] = data["train"].arrays["speech"].items[0] + np.float16(0.5)
    assert not pipeline.fit(P, data, "att", fusion="attention", progress=False).reused
    with pytest.raises(ParamError, match="frame features"):
        pipeline.fit(P, data, "concat-on-frames", progress=False)
    with pytest.raises(ParamError, match="frame_pool"):
        pipeline.fit(P, data, "att2", fusion="attention", frame_pool=2, progress=False)
    mean = pipeline.features(P, manifest, roles=("speech",), progress=False)["speech"]
    assert mean.shape == (36, 6) and made["speech"] == {}                  # the mean path is unchanged
    with pytest.raises(ParamError, match="frame_pool"):
        extract_manifest_features(P, manifest, roles=("speech",), frames=True, progress=False,
                                  encoders={"speech": FakeFrameEncoder(frame_pool=2)})


# ------------------------------------------------------------------ search with an attention checkpoint
@pytest.fixture
def fake_search(monkeypatch):
    from claspkit.model import clasp as M
    from claspkit.search import query as S

    options = {}
    monkeypatch.setattr(M, "create_encoder", fake_factory(options))
    S.clear_caches()
    yield S, options
    S.clear_caches()


def test_clasp_feeds_frames_to_anattention_checkpoint(tmp_path, fake_search, monkeypatch):
    from claspkit.model import clasp as M
    from claspkit.model.inference import embed_speech

    S, options = fake_search
    ckpt = attention_checkpoint(tmp_path / "att")
    emb = M.CLASP.from_pretrained(ckpt)
    assert options["speech"]["frame_pool"] == 4 and emb.frames
    assert emb.identity["cache_ids"]["speech"] == "fake-frames/frames-pool4-v1"
    waves = [tone(s, 300 + 20 * i, i) for i, s in enumerate([0.4, 1.1, 0.7, 0.25, 0.9])]
    out = emb.encode_waves(waves, batch_size=2)
    enc = FakeFrameEncoder()
    expect = embed_speech(emb.head, enc.encode_frames(waves), FakeImage().encode(waves))
    np.testing.assert_allclose(out, expect, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(emb.encode_waves(waves[1:2]), out[1:2], atol=1e-5)   # alone == in a batch
    # index and search a folder (the VAD is replaced: tones are not speech)
    lib = tmp_path / "lib"
    lib.mkdir()
    for i, w in enumerate(waves):
        sf.write(lib / f"t{i}.wav", np.concatenate([w, np.zeros(SR // 2, np.float32), w[::-1]]), SR)
    monkeypatch.setattr(S, "segment", lambda audio, sr, params: [(0.0, 0.2), (0.3, len(audio) / sr)])
    summary = S.build_index(lib, ckpt, tmp_path / "idx", progress=False)
    assert summary.segments == 10 and not summary.skipped
    hits = S.search(tmp_path / "idx", "sentence 3", k=3)
    assert len(hits) == 3 and all(-1 <= h.score <= 1 for h in hits)


@pytest.mark.slow
def test_clasp_equals_the_cached_frames_route_with_whisper(tmp_path, whisper, monkeypatch):
    """What search embeds equals what evaluation embeds from the feature cache (float16 both ways)."""
    from claspkit.model import clasp as M
    from claspkit.model.fusion import build_fusion
    from claspkit.model.checkpoint import save_checkpoint
    from claspkit.model.inference import embed_speech

    monkeypatch.setattr(M, "create_encoder", lambda role, name, **kw: whisper if role == "speech" else FakeText())
    torch.manual_seed(0)
    model = build_fusion({"fusion": "attention", "branches": "speech", "speech_dim": 384, "image_dim": None,
                          "out_dim": 8, "attention_dim": 32, "attention_heads": 4}).eval()
    ckpt = save_checkpoint(tmp_path / "ckpt", model,
                           {"speech_backbone": "whisper-tiny.en", "text_backbone": "fake-text"})
    waves = [tone(s, 200 + 90 * i, i) for i, s in enumerate([1.2, 2.5, 0.8])]
    paths = []
    for i, w in enumerate(waves):
        sf.write(tmp_path / f"w{i}.wav", w, SR, subtype="FLOAT")
        paths.append(tmp_path / f"w{i}.wav")
    cached = extract_frames(whisper, paths, cache=tmp_path / "cache", progress=False)
    from claspkit.data.audio import load_audio

    out = M.CLASP.from_pretrained(ckpt).encode_waves([load_audio(p) for p in paths])   # as loaded for training
    np.testing.assert_allclose(out, embed_speech(model, cached, None), atol=1e-5)
