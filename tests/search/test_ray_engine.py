"""The Ray engine (claspkit.encoders.engine, claspkit.search.ray_index): the same index and feature-cache bytes as
the local engine, resumable.

The Ray tests share one local Ray instance (``ray.init(num_cpus=2)``, started and stopped here) and real
offline backbones (whisper-tiny.en, efficientnet-lite0): Ray workers are other processes, so the
monkeypatched fakes of the other search tests cannot reach them. The argument checks need no Ray.
"""
import sys

import numpy as np
import pytest
import torch

from claspkit import cli
from claspkit.encoders import engine as E
from claspkit.config import load_params
from claspkit.encoders import features as F
from claspkit.errors import ClaspkitError, ParamError, ToolMissingError
from claspkit.search import query as S, ray_index as R
from search_fixtures import FakeEncoder, gap, write

NAMES = {"speech": "whisper-tiny.en", "image": "efficientnet-lite0", "text": "e5-small-multilingual"}


# ---------------------------------------------------------------------- no Ray needed
def test_unknown_engine_is_a_param_error_listing_the_choices(tmp_path):
    with pytest.raises(ParamError, match=r"unknown engine 'spark' is not one of: local, ray"):
        E.check_engine("spark")
    with pytest.raises(ParamError, match=r"engine.*'spark' is not one of: local, ray"):
        load_params("tiny", engine="spark")
    assert load_params("tiny", engine="ray").engine == "ray" and load_params("tiny").engine == "local"
    with pytest.raises(ParamError, match="unknown engine"):
        S.build_index(tmp_path, tmp_path / "no-model", tmp_path / "idx", engine="spark")
    assert cli.main(["index", str(tmp_path), "--model", "m", "--out", "o", "--engine", "spark"]) == 2


def test_missing_ray_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)            # `import ray` now raises ImportError
    with pytest.raises(ToolMissingError, match=r"pip install 'claspkit\[ray\]'"):
        E.import_ray()
    with pytest.raises(ToolMissingError, match=r"claspkit\[ray\]"):   # before any model loads
        S.build_index(tmp_path, tmp_path / "no-model", tmp_path / "idx", engine="ray")
    with pytest.raises(ToolMissingError, match=r"claspkit\[ray\]"):
        F.extract_audio(FakeEncoder("speech", "fake"), [], cache=tmp_path / "c", engine="ray")
    assert cli.main(["index", str(tmp_path), "--model", "m", "--out", "o", "--engine", "ray"]) == 2
    assert "pip install 'claspkit[ray]'" in capsys.readouterr().err


def test_an_address_nothing_answers_on_fails_at_once():
    import socket

    with socket.socket() as free:                               # a port with no listener
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(ClaspkitError, match=rf"no Ray head answers at 127.0.0.1:{port}.*ray start --head"):
        E.check_address(f"127.0.0.1:{port}")
    with pytest.raises(ParamError, match="HOST:PORT"):
        E.check_address("headnode")
    E.check_address(None), E.check_address("auto")


def test_workers_rebuild_only_registered_backbones():
    with pytest.raises(ParamError, match="create_backbone"):
        E.spec_of(FakeEncoder("speech", "fake"))


def test_a_worker_runs_the_drivers_thread_count_whatever_its_cpu_share():
    # whisper on an AMD EPYC gave other bits at 1 and 2 threads: an actor reserving one CPU still runs the
    # driver's count, set through torch's before the backbone resolves threads=0 (backbones.cpu_threads)
    from claspkit.encoders.backbones import cpu_threads, create_backbone

    driver = torch.get_num_threads()
    try:
        spec = E.spec_of(create_backbone("speech", "whisper-tiny.en"))
        worker = E.BackboneActor(spec, {"vars": {}, "torch_threads": driver + 1}, frames=False, mode="files",
                             batch_size=2)
        assert worker.encoder.threads == driver + 1 == torch.get_num_threads()
        pinned = E.BackboneActor(E.spec_of(create_backbone("speech", "whisper-tiny.en", threads=1)),
                             {"vars": {}, "torch_threads": driver + 1}, frames=False, mode="files", batch_size=2)
        assert pinned.encoder.threads == 1                          # an explicit count travels as it is
    finally:
        torch.set_num_threads(driver)
    assert cpu_threads(0) == driver and cpu_threads(3) == 3
    for bad in (-1, 1.5, "2", True, None):
        with pytest.raises(ParamError, match="threads must be a non-negative int"):
            cpu_threads(bad)


def test_rows_per_call_follow_audio_seconds():
    assert E.rows_per_call([30.0, 30.0], 120.0) == 4
    assert E.rows_per_call([300.0], 120.0) == 1                 # never less than one encoder batch
    assert E.rows_per_call([], 120.0) == 1
    with pytest.raises(ParamError, match="target_seconds"):
        E.rows_per_call([1.0], 0)


def test_manifest_features_pass_the_engine_on(monkeypatch):
    import pandas as pd

    seen = []
    monkeypatch.setattr(F, "extract_audio", lambda *a, **kw: seen.append(kw) or (np.zeros((1, 1)), None))
    monkeypatch.setattr(F, "extract_text", lambda *a, **kw: (np.zeros((1, 1)), None))
    P = load_params("tiny", engine="ray", ray_address="head:6379")
    F.extract_manifest_features(P, pd.DataFrame({"path": ["audio/x.wav"], "text": ["x"]}), roles=("image",),
                                encoders={"image": FakeEncoder("image", "fake")})
    assert (seen[0]["engine"], seen[0]["address"]) == ("ray", "head:6379")


# ---------------------------------------------------------------------- on a local Ray instance
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the Ray engine's tests need `pip install 'claspkit[ray]'`")
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=E.runtime_env(), log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory):
    from claspkit.model.fusion import build_fusion
    from claspkit.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = {"fusion": "concat", "branches": "combined", "speech_dim": 384, "image_dim": 1280, "out_dim": 384,
           "dropout_scale": 1.0}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "real", build_fusion(cfg).eval(),
                           {f"{r}_backbone": n for r, n in NAMES.items()})


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.mark.slow
def test_ray_index_is_the_local_index_byte_for_byte_and_resumes(local_ray, real_ckpt, voice, tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    write(lib / "a.wav", voice[0], gap(1.5), voice[1])
    write(lib / "b.flac", voice[2], fmt="FLAC")
    write(lib / "c.wav", voice[3], gap(1.0), voice[4])
    write(lib / "copy.wav", voice[0], gap(1.5), voice[1])        # the same bytes as a.wav: embedded once
    write(lib / "d.wav", voice[4])
    (lib / "empty.wav").write_bytes(b"")
    (lib / "broken.mp3").write_bytes(np.random.default_rng(0).bytes(3000))
    local = S.build_index(lib, real_ckpt, tmp_path / "local", progress=False, batch_size=2)
    assert local.segments == 8 and len(local.skipped) == 2

    staged, real = [], R._stage_group

    def stop_after_one(*a, **kw):                               # the driver dies after the first group is staged
        if staged:
            raise KeyboardInterrupt
        staged.append(1)
        real(*a, **kw)

    monkeypatch.setattr(R, "_stage_group", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        S.build_index(lib, real_ckpt, tmp_path / "ray", progress=False, batch_size=2, engine="ray", workers=1)
    assert not (tmp_path / "ray" / "index.json").exists()
    monkeypatch.setattr(R, "_stage_group", real)
    ray_run = S.build_index(lib, real_ckpt, tmp_path / "ray", progress=False, batch_size=2, engine="ray",
                            workers=1)
    assert local.files_reused == 1 and ray_run.files_resumed >= 1
    assert ray_run.files_resumed + ray_run.files_embedded + ray_run.files_reused == local.files_embedded + 1
    assert ray_run.segments == local.segments and ray_run.skipped == local.skipped
    assert files_of(tmp_path / "ray") == files_of(tmp_path / "local")      # index.json, vectors, segments


@pytest.mark.slow
def test_ray_features_are_the_local_cache_entries_and_resume(local_ray, voice, tmp_path):
    from claspkit.encoders.backbones import create_backbone

    import soundfile as sf

    paths = []
    for i, w in enumerate([*voice, voice[0][: len(voice[0]) // 2]]):
        paths.append(tmp_path / "clips" / f"c{i}.wav")
        paths[-1].parent.mkdir(exist_ok=True)
        sf.write(paths[-1], w, 16000)
    enc = create_backbone("speech", NAMES["speech"])
    local = F.extract_audio(enc, paths, cache=tmp_path / "local", batch_size=2, progress=False)

    class Dies(F.FeatureCache):                                 # killed while the second batch is written
        puts = 0

        def put(self, *a, **kw):
            Dies.puts += 1
            if Dies.puts == 3:
                raise KeyboardInterrupt
            super().put(*a, **kw)

    with pytest.raises(KeyboardInterrupt):
        F.extract_audio(enc, paths, cache=Dies(tmp_path / "ray"), batch_size=2, progress=False, engine="ray")
    out, st = F.extract_audio(enc, paths, cache=tmp_path / "ray", batch_size=2, progress=False, engine="ray",
                              return_stats=True)
    assert 2 <= st.n_reused <= 3 and st.n_reused + st.n_computed == len(paths)
    np.testing.assert_array_equal(out, local)
    assert files_of(tmp_path / "ray" / F._slug(enc.cache_id)) == files_of(tmp_path / "local" / F._slug(enc.cache_id))
    frames = F.extract_frames(create_backbone("speech", NAMES["speech"], frame_pool=4), paths,
                              cache=tmp_path / "ray", batch_size=2, progress=False, engine="ray")
    want = F.extract_frames(create_backbone("speech", NAMES["speech"], frame_pool=4), paths,
                            cache=tmp_path / "local2", batch_size=2, progress=False)
    assert len(frames) == len(want) == len(paths) and all(np.array_equal(frames[i], want[i]) for i in range(len(paths)))



def test_workers_get_the_drivers_openmp_thread_count(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert E.runtime_env()["env_vars"]["OMP_NUM_THREADS"] == "3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert int(E.runtime_env()["env_vars"]["OMP_NUM_THREADS"]) >= 1      # OpenMP's default: the usable cores
