"""build_index / search with fake backbones (counted), a tiny real fusion checkpoint and the real VAD."""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

from claspkit.search import query as S
from claspkit.model import clasp as M
from claspkit.errors import ClaspkitError, DataMissingError, ParamError
from claspkit.search.index import load_index
from search_fixtures import SR, gap, make_checkpoint, write


def test_build_index_embeds_segments_and_lists_skipped_files(library, ckpt, fakes, tmp_path):
    out = tmp_path / "idx"
    summary = S.build_index(library, ckpt, out, progress=False)
    assert summary.files_indexed == 3 and summary.files_embedded == 3       # tone.ogg: decoded, no speech: skipped
    counted = summary.files_embedded + summary.files_reused + summary.files_resumed + len(summary.skipped)
    assert counted == len(S.audio_files(library)) == 7                     # each file counted once
    assert summary.segments == 4 == summary.segments_embedded
    reasons = {s["path"]: s["reason"] for s in summary.skipped}
    assert set(reasons) == {"empty.wav", "broken.mp3", "silent.wav", "tone.ogg"}
    assert "zero-length" in reasons["empty.wav"] and "silent" in reasons["silent.wav"]
    assert "cannot read" in reasons["broken.mp3"] and "no speech" in reasons["tone.ogg"]
    assert str(library) not in str(reasons)                                # paths are relative
    assert fakes.items_of("speech") == fakes.items_of("image") == 4
    assert summary.audio_seconds > 10 and summary.rtf > 0
    assert "4 skipped" in str(summary)
    idx = load_index(out)
    assert sorted(f for f, e in idx.files.items() if e["n_segments"]) == ["a.wav", "b.flac", "sub/c.m4a"]
    assert idx.files["a.wav"]["n_segments"] == 2
    np.testing.assert_allclose(np.linalg.norm(idx.vectors, axis=1), 1.0, atol=1e-5)
    a0, a1 = sorted((s, e) for s, e, f in zip(idx.start_s, idx.end_s, idx.file_of_row) if f == 0)
    assert a0[1] <= a1[0] and a1[0] > 2.5      # the 1.5 s pause separates the two sentences
    assert idx.manifest["skipped"] == sorted(summary.skipped, key=lambda s: s["path"])


def test_rerun_embeds_only_new_and_changed_files(library, ckpt, fakes, tmp_path, voice):
    out = tmp_path / "idx"
    S.build_index(library, ckpt, out, progress=False)
    before = load_index(out)
    a_rows = before.file_rows("a.wav")[0].copy()
    n0 = fakes.items_of("speech")

    again = S.build_index(library, ckpt, out, progress=False)               # nothing changed
    assert fakes.items_of("speech") == n0 and again.files_embedded == 0
    assert again.files_reused == 3 and again.segments == 4                # tone.ogg: remembered, still skipped
    assert again.files_reused + len(again.skipped) == 7 and "tone.ogg" in {x["path"] for x in again.skipped}

    write(library / "d.wav", voice[4])                                      # new
    shutil.copy(library / "d.wav", library / "d2.wav")                      # new, twice: embedded once
    write(library / "b.flac", voice[2], gap(1.0), voice[0], fmt="FLAC")     # changed: 2 segments now
    (library / "sub" / "c.m4a").unlink()                                    # removed
    os.utime(library / "a.wav", ns=(1, 1))                                  # touched only
    shutil.copy(library / "a.wav", library / "a-copy.wav")                 # a copy: same content
    s = S.build_index(library, ckpt, out, progress=False)
    assert fakes.items_of("speech") - n0 == 3                               # d (1) + b (2) segments
    assert (s.files_embedded, s.files_removed, s.segments_embedded) == (2, 1, 3)
    idx = load_index(out)
    assert sorted(f for f, e in idx.files.items() if e["n_segments"]) == ["a-copy.wav", "a.wav", "b.flac",
                                                                          "d.wav", "d2.wav"]
    assert idx.files["a.wav"]["mtime_ns"] == 1
    np.testing.assert_allclose(idx.file_rows("a.wav")[0], a_rows, atol=1e-6)
    np.testing.assert_allclose(idx.file_rows("a-copy.wav")[0], a_rows, atol=1e-6)


def test_interrupted_run_keeps_old_index_and_resumes(library, ckpt, fakes, tmp_path, voice):
    out = tmp_path / "idx"
    S.build_index(library, ckpt, out, progress=False)
    hits_before = S.search(out, "steam engine", k=3)
    for i in range(3):
        write(library / f"new{i}.wav", gap(0.1), voice[i + 1])      # distinct from every other file
    enc = fakes[("speech", "fake-speech")]
    enc.fail_at = enc.items + 2                                             # dies on the third new file
    with pytest.raises(RuntimeError, match="simulated crash"):
        S.build_index(library, ckpt, out, progress=False, batch_size=1)
    S.clear_caches()
    assert S.search(out, "steam engine", k=3) == hits_before                # old index intact
    assert "new0.wav" not in load_index(out).files
    enc.fail_at = None
    n0 = enc.items
    s = S.build_index(library, ckpt, out, progress=False, batch_size=1)
    assert enc.items - n0 == 1 and s.files_resumed == 2 and s.files_embedded == 1
    assert {"new0.wav", "new1.wav", "new2.wav"} <= set(load_index(out).files)


def test_killed_run_keeps_old_index_and_resumes(library, ckpt, fakes, tmp_path, voice):
    """SIGKILL in the middle of a run (no cleanup code can run): the real crash case."""
    out = tmp_path / "idx"
    S.build_index(library, ckpt, out, progress=False)
    for i in range(3):
        write(library / f"new{i}.wav", gap(0.1), voice[i + 1])      # distinct from every other file
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(os.path.dirname(__file__))!r})
        import search_fixtures as T
        from claspkit.search import query as S
        from claspkit.model import clasp as M
        M.create_encoder = T.Fakes()
        real = T.FakeEncoder.encode
        def encode(self, items):
            if self.role == "speech" and self.items + len(items) > 2:
                os.kill(os.getpid(), signal.SIGKILL)             # dies on the third new file
            return real(self, items)
        T.FakeEncoder.encode = encode
        S.build_index({str(library)!r}, {str(ckpt)!r}, {str(out)!r}, progress=False, batch_size=1)
    """))
    killed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    idx = load_index(out)
    assert len(idx) == 4 and "new0.wav" not in idx.files
    n0 = fakes.items_of("speech")
    s = S.build_index(library, ckpt, out, progress=False, batch_size=1)
    assert (s.files_embedded, s.files_resumed, s.segments) == (1, 2, 7)
    assert fakes.items_of("speech") - n0 == 1


def test_other_model_is_refused_and_rebuild_replaces(library, ckpt, fakes, tmp_path):
    out = tmp_path / "idx"
    S.build_index(library, ckpt, out, progress=False)
    other = make_checkpoint(tmp_path / "model-b", seed=1)
    with pytest.raises(ClaspkitError) as e:
        S.build_index(library, other, out, progress=False)
    assert "model-a" in str(e.value) and "model-b" in str(e.value)
    s = S.build_index(library, other, out, progress=False, rebuild=True)
    assert s.files_embedded == 3 and len(s.skipped) == 4  # tone.ogg has no speech
    assert load_index(out).identity["model"]["checkpoint"] == "model-b"


def test_speech_only_model_never_computes_images(library, fakes, tmp_path):
    ckpt = make_checkpoint(tmp_path / "speech-only", branches="speech")
    S.build_index(library, ckpt, tmp_path / "idx", progress=False)
    assert fakes.items_of("speech") == 4 and fakes.items_of("image") == 0


def test_image_runtime_is_onnx_by_default_and_can_be_torch(library, ckpt, fakes, tmp_path):
    S.build_index(library, ckpt, tmp_path / "a", progress=False)
    cpus = M._cpus()
    assert fakes.options == {"image": {"runtime": "onnx", "threads": max(1, cpus // 2)},
                             "speech": {"threads": max(1, cpus // 2)}, "text": {}}
    S.build_index(library, ckpt, tmp_path / "b", progress=False, image_runtime="torch")
    assert fakes.options["image"] == {}
    with pytest.raises(ClaspkitError, match=r"same model .* image features were computed differently "
                                            r"\(image: fake-image/v1 vs fake-image/v1-ort.*--image-runtime"):
        S.build_index(library, ckpt, tmp_path / "b", progress=False)     # onnx now, torch before
    with pytest.raises(ParamError, match=r"unknown image runtime 'gpu'.*onnx.*torch"):
        S.build_index(library, ckpt, tmp_path / "c", progress=False, image_runtime="gpu")

def test_search_finds_the_segment_and_moves_with_the_folder(library, ckpt, fakes, tmp_path):
    out = library / ".." / "idx"
    S.build_index(library, ckpt, out, progress=False)
    idx = load_index(out)
    target = int(np.flatnonzero(idx.file_of_row == list(idx.files).index("b.flac"))[0])
    text = fakes[("text", "fake-text")]
    real = text.encode
    text.encode = lambda items: np.asarray(idx.vectors[[target]]) if items == ["find b"] else real(items)
    hits = S.search(out, "find b", k=2, lang="fr")
    assert hits[0].file == "b.flac" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 2 and hits[0].score >= hits[1].score
    assert hits[0].path.is_file()
    S.clear_caches()
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.move(tmp_path, moved)
    try:
        hits = S.search(moved / "idx", "find b", k=1)
        assert hits[0].path == (moved / "lib" / "b.flac").resolve() and hits[0].path.is_file()
    finally:
        shutil.move(moved, tmp_path)


def test_search_input_checks(library, ckpt, fakes, tmp_path):
    out = tmp_path / "idx"
    S.build_index(library, ckpt, out, progress=False)
    with pytest.raises(ParamError, match="non-empty"):
        S.search(out, "   ")
    with pytest.raises(ParamError, match="language code"):
        S.search(out, "x", lang="French!")
    with pytest.raises(ParamError, match="k must"):
        S.search(out, "x", k=0)
    with pytest.raises(DataMissingError):
        S.search(tmp_path / "nope", "x")
    assert len(S.search(out, "anything", k=50)) == 4
    fakes[("text", "fake-text")].cache_id = "fake-text/v2"
    with pytest.raises(ClaspkitError, match="rebuild"):
        S.search(out, "x")


def test_bad_arguments_are_refused(library, ckpt, fakes, tmp_path):
    with pytest.raises(DataMissingError, match="does not exist"):
        S.build_index(tmp_path / "missing", ckpt, tmp_path / "idx", progress=False)
    with pytest.raises(DataMissingError):
        S.build_index(library, tmp_path / "no-ckpt", tmp_path / "idx", progress=False)
    assert not (tmp_path / "idx").exists()


def test_index_inside_the_audio_folder_is_not_walked(library, ckpt, fakes):
    S.build_index(library, ckpt, library / "index", progress=False)
    sf.write(library / "index" / "stray.wav", np.zeros(SR, np.float32), SR)
    s = S.build_index(library, ckpt, library / "index", progress=False)
    assert s.files_embedded == 0 and all("stray" not in x["path"] for x in s.skipped)


@pytest.mark.slow
def test_end_to_end_with_the_offline_backbones(tmp_path, voice):
    """Real whisper-tiny.en + efficientnet-lite0 + e5 with an untrained fusion head: the plumbing, not quality."""
    backbones = pytest.importorskip("claspkit.encoders.backbones")
    from claspkit.model.fusion import build_fusion
    from claspkit.model.checkpoint import save_checkpoint

    names = {"speech": "whisper-tiny.en", "image": "efficientnet-lite0", "text": "e5-small-multilingual"}
    enc = {r: backbones.create_backbone(r, n) for r, n in names.items()}
    torch.manual_seed(0)
    cfg = {"fusion": "concat", "branches": "combined", "speech_dim": enc["speech"].dim,
           "image_dim": enc["image"].dim, "out_dim": enc["text"].dim, "dropout_scale": 1.0}
    ckpt = save_checkpoint(tmp_path / "ckpt", build_fusion(cfg).eval(),
                           {f"{r}_backbone": n for r, n in names.items()})
    write(tmp_path / "lib" / "talk.wav", voice[0], gap(1.0), voice[1])
    S.clear_caches()
    s = S.build_index(tmp_path / "lib", ckpt, tmp_path / "idx", progress=False)
    assert s.segments == 2 and s.files_indexed == 1
    hits = S.search(tmp_path / "idx", "la machine à vapeur", k=5, lang="fr")
    assert len(hits) == 2 and all(-1 <= h.score <= 1 for h in hits)
    first = load_index(tmp_path / "idx").vectors.copy()
    S.build_index(tmp_path / "lib", ckpt, tmp_path / "idx2", progress=False)
    np.testing.assert_allclose(load_index(tmp_path / "idx2").vectors, first, atol=1e-5)   # deterministic


def test_backbones_without_a_threads_option_are_created_without_one(monkeypatch):
    calls = []

    def create(role, name, **options):
        calls.append(options)
        if "threads" in options or options.get("runtime") == "bad":
            raise ParamError(f"{role} backbone {name!r} does not take that option")
        return (role, name)

    monkeypatch.setattr(M, "create_encoder", create)
    assert M._create_sharing("speech", "hf:tiny", {"threads": 1}) == ("speech", "hf:tiny")
    assert calls == [{"threads": 1}, {}]
    with pytest.raises(ParamError, match="does not take"):          # other option errors still surface
        M._create_sharing("image", "x", {"runtime": "bad", "threads": 1})
