import json
import shutil
import time

import numpy as np
import pytest

from claspkit.search import _exact, _pq, index as ix
from claspkit.errors import ClaspkitError, DataMissingError, ParamError
from claspkit.search.index import IndexWriter, load_index, normalize_rows, search_exact

DIM = 16


def identity(sha="a" * 64, name="ckpt-a", seg="vad:v1", dim=DIM):
    return {"model": {"checkpoint": name, "checkpoint_sha256": sha,
                      "backbones": {"speech": "fake-speech", "image": "fake-image", "text": "fake-text"},
                      "cache_ids": {"speech": "s1", "image": "i1", "text": "t1"}},
            "segmentation": seg, "dim": dim}


def unit(n, seed):
    return normalize_rows(np.random.default_rng(seed).standard_normal((n, DIM)))


def entry(path, sha, size=10, mtime=1, dur=5.0):
    return {"path": path, "sha256": sha, "size": size, "mtime_ns": mtime, "duration_s": dur}


def spans(n):
    return [(2.0 * i, 2.0 * i + 1.5) for i in range(n)]


def build(root, audio, files, ident=None, **kw):
    """files: {relpath: (sha, vectors)}; stages every file and commits."""
    with IndexWriter(root, ident or identity(), audio, **kw) as w:
        for rel, (sha, v) in files.items():
            w.stage(sha, v, spans(len(v)), 5.0)
        return w.commit([entry(rel, sha) for rel, (sha, _) in files.items()])


@pytest.fixture
def folders(tmp_path):
    audio = tmp_path / "lib"
    audio.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        (audio / name).write_bytes(b"x")
    return audio, tmp_path / "lib.index"


def test_round_trip_and_exact_search(folders):
    audio, root = folders
    va, vb = unit(3, 1), unit(2, 2)
    build(root, audio, {"b.wav": ("b" * 64, vb), "a.wav": ("a" * 64, va)})
    idx = load_index(root)
    assert len(idx) == 5 and idx.dim == DIM
    np.testing.assert_allclose(idx.vectors, np.concatenate([va, vb]), atol=1e-6)   # path order: a then b
    v, s = idx.file_rows("b.wav")
    np.testing.assert_allclose(v, vb, atol=1e-6)
    np.testing.assert_allclose(s, spans(2))
    hits = idx.search(vb[1], k=3)
    assert (hits[0].file, hits[0].start_s, hits[0].end_s) == ("b.wav", 2.0, 3.5)
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].path == audio.resolve() / "b.wav"
    assert len(idx.search(va[0], k=50)) == 5


def test_exact_search_matches_brute_force_blockwise(monkeypatch):
    x, q = unit(1000, 3), unit(7, 4)
    monkeypatch.setattr(_exact, "EXACT_BLOCK", 97)
    rows, scores = search_exact(x, q, 10)
    brute = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(rows, brute)
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, brute, axis=1), atol=1e-6)


def test_ties_are_broken_by_row():
    x = normalize_rows(np.ones((5, DIM)))
    rows, _ = search_exact(x, x[:1], 3)
    assert rows.tolist() == [[0, 1, 2]]


def test_incremental_commit_reuses_previous_rows_and_drops_removed(folders):
    audio, root = folders
    va, vb, vc = unit(3, 1), unit(2, 2), unit(4, 5)
    build(root, audio, {"a.wav": ("a" * 64, va), "b.wav": ("b" * 64, vb)})
    with IndexWriter(root, identity(), audio) as w:
        assert w.previous is not None and w.segments_of(entry("a.wav", "a" * 64)) == 3
        w.stage("c" * 64, vc, spans(4), 5.0)
        # a.wav unchanged (nothing staged), b.wav removed, c.wav new, a copy of a under another name
        idx = w.commit([entry("a.wav", "a" * 64), entry("c.wav", "c" * 64), entry("copy.wav", "a" * 64)])
    assert sorted(idx.files) == ["a.wav", "c.wav", "copy.wav"]
    assert len(idx) == 10
    np.testing.assert_allclose(idx.file_rows("copy.wav")[0], va, atol=1e-6)
    assert idx.manifest["generation"] == 2
    assert sorted(p.name for p in root.iterdir()) == [".lock", "index.json", "segments.2.npy", "vectors.2.npy"]


def test_same_input_gives_byte_identical_index(tmp_path, folders):
    audio, root = folders
    files = {"a.wav": ("a" * 64, unit(3, 1)), "b.wav": ("b" * 64, unit(2, 2))}
    other = tmp_path / "other.index"
    build(root, audio, files)
    time.sleep(1.1)                                     # a timestamp anywhere would now differ
    build(other, audio, files)
    for name in ("vectors.1.npy", "segments.1.npy"):
        assert (root / name).read_bytes() == (other / name).read_bytes()
    m1, m2 = (json.loads((r / "index.json").read_text()) for r in (root, other))
    m1.pop("audio_root"), m2.pop("audio_root")
    assert m1 == m2


def test_other_model_is_refused_naming_both(folders):
    audio, root = folders
    build(root, audio, {"a.wav": ("a" * 64, unit(3, 1))})
    other = identity(sha="f" * 64, name="ckpt-b")
    with pytest.raises(ClaspkitError) as e:
        IndexWriter(root, other, audio).__enter__()
    assert "ckpt-a" in str(e.value) and "ckpt-b" in str(e.value) and "--rebuild" in str(e.value)
    changed_backbone = identity()
    changed_backbone["model"]["cache_ids"]["speech"] = "s2"
    with pytest.raises(ClaspkitError, match=r"same model ckpt-a .* speech features were computed differently "
                                            r"\(speech: s1 vs s2"):
        IndexWriter(root, changed_backbone, audio).__enter__()
    with pytest.raises(ClaspkitError, match="segmentation"):
        IndexWriter(root, identity(seg="vad:v2"), audio).__enter__()
    # the refused runs did not touch it, and --rebuild replaces it
    assert len(load_index(root)) == 3
    idx = build(root, audio, {"b.wav": ("b" * 64, unit(2, 2))}, ident=other, rebuild=True)
    assert list(idx.files) == ["b.wav"] and idx.identity["model"]["checkpoint"] == "ckpt-b"


def test_crash_before_manifest_keeps_previous_index(folders, monkeypatch):
    audio, root = folders
    va = unit(3, 1)
    build(root, audio, {"a.wav": ("a" * 64, va)})

    def boom(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ix, "atomic_write_text", boom)
        with pytest.raises(KeyboardInterrupt):
            build(root, audio, {"a.wav": ("a" * 64, va), "b.wav": ("b" * 64, unit(2, 2))})
    idx = load_index(root)                              # the old generation, still whole
    assert list(idx.files) == ["a.wav"] and len(idx) == 3
    assert (root / "vectors.2.npy").exists()             # the unfinished generation's leftovers...
    with IndexWriter(root, identity(), audio) as w:      # ...and the staged work, which a re-run reuses
        assert w.is_staged("b" * 64)
        idx = w.commit([entry("a.wav", "a" * 64), entry("b.wav", "b" * 64)])
    assert len(idx) == 5 and not (root / "work").exists()


def test_second_writer_is_refused_while_one_runs(folders):
    audio, root = folders
    with IndexWriter(root, identity(), audio):
        with pytest.raises(ClaspkitError, match="another `claspkit index` run"):
            IndexWriter(root, identity(), audio).__enter__()
    with IndexWriter(root, identity(), audio):          # released on exit
        pass


def test_moved_folder_and_index_still_resolve(tmp_path):
    audio = tmp_path / "proj" / "lib"
    audio.mkdir(parents=True)
    (audio / "a.wav").write_bytes(b"x")
    build(tmp_path / "proj" / "idx", audio, {"a.wav": ("a" * 64, unit(2, 1))})
    shutil.move(tmp_path / "proj", tmp_path / "moved")
    idx = load_index(tmp_path / "moved" / "idx")
    hit = idx.search(idx.vectors[1], k=1)[0]
    assert hit.path == (tmp_path / "moved" / "lib" / "a.wav").resolve() and hit.path.is_file()


def test_bad_vectors_and_inputs_are_refused(folders):
    audio, root = folders
    with IndexWriter(root, identity(), audio) as w:
        with pytest.raises(ClaspkitError, match="zero or not finite"):
            w.stage("a" * 64, np.zeros((2, DIM)), spans(2), 5.0)
        with pytest.raises(ClaspkitError, match="expects"):
            w.stage("a" * 64, unit(2, 1)[:, :8], spans(2), 5.0)
        with pytest.raises(ClaspkitError, match="neither staged"):
            w.commit([entry("a.wav", "a" * 64)])
    build(root, audio, {"a.wav": ("a" * 64, unit(2, 1))})
    idx = load_index(root)
    with pytest.raises(ParamError, match="dim"):
        idx.search(np.ones(8), k=1)
    with pytest.raises(ParamError, match="k must"):
        idx.search(unit(1, 0)[0], k=0)


def test_missing_and_corrupt_indexes_are_clear(tmp_path, folders):
    with pytest.raises(DataMissingError, match="claspkit index AUDIO_DIR"):
        load_index(tmp_path / "nowhere")
    audio, root = folders
    build(root, audio, {"a.wav": ("a" * 64, unit(2, 1))})
    (root / "index.json").write_text("{not json")
    with pytest.raises(ClaspkitError, match="--rebuild"):
        load_index(root)


def test_large_index_gets_a_calibrated_ivf(folders, monkeypatch):
    audio, root = folders
    monkeypatch.setattr(ix, "ANN_MIN_SEGMENTS", 3000)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((60, DIM))
    x = normalize_rows(centers[rng.integers(0, 60, 4050)] + 0.3 * rng.standard_normal((4050, DIM)))
    x, held_out = x[:4000], x[4000:]                               # queries: new rows of the same clusters
    idx = build(root, audio, {"a.wav": ("a" * 64, x[:2500]), "b.wav": ("b" * 64, x[2500:])})
    info = idx.manifest["ann"]
    assert idx.ann is not None and info["kind"] == "ivf-flat" and info["recall_at_10"] >= ix.ANN_TARGET_RECALL
    got, _ = idx.search_vectors(held_out, 10)
    exact, _ = search_exact(np.asarray(idx.vectors), held_out, 10)
    assert ix.recall_at_k(got, exact) >= 0.9
    assert load_index(root).ann is not None and (root / "ivf.1.faiss").is_file()
    # an incremental commit re-adds the vectors to the trained lists instead of re-running k-means
    with IndexWriter(root, identity(), audio) as w:
        w.stage("c" * 64, x[:300], spans(300), 5.0)
        idx2 = w.commit([entry("a.wav", "a" * 64), entry("b.wav", "b" * 64), entry("c.wav", "c" * 64)])
    assert idx2.manifest["ann"]["trained_on"] == 4000 and idx2.ann.ntotal == 4300
    assert idx2.manifest["ann"]["recall_at_10"] >= ix.ANN_TARGET_RECALL
    assert sorted(p.name for p in root.glob("ivf.*")) == ["ivf.2.faiss"]


def test_benchmark_rows_are_consistent():
    from claspkit.bench.search import bench_queries, synthetic_vectors

    x = synthetic_vectors(3000, DIM, seed=1)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(x, synthetic_vectors(3000, DIM, seed=1))
    rows = bench_queries([3000], DIM, [0.001] * 10)
    assert [r["method"].split(" (")[0] for r in rows] == ["numpy exact", "faiss flat", "faiss ivf"]
    assert rows[0]["recall@10"] == 1.0 and rows[1]["recall@10"] == pytest.approx(1.0, abs=0.02)
    assert rows[0]["used_by_claspkit"] and not rows[2]["used_by_claspkit"]
    assert all(r["total_ms"][0] >= r["search_ms"][0] for r in rows)
    assert rows[2]["bytes_per_segment"] > rows[0]["bytes_per_segment"] == 4 * DIM + 12


# ---------------------------------------------------------------------- compressed index (IVF-PQ + re-ranking)
PQ_DIM = 32


def clustered(n, seed=0):
    from claspkit.bench.search import synthetic_vectors

    return synthetic_vectors(n, PQ_DIM, seed=seed, cluster=50)


@pytest.fixture
def small_thresholds(monkeypatch):
    """IVF-Flat from 1,000 segments, IVF-PQ from 2,000: a few thousand rows exercise the compressed path."""
    monkeypatch.setattr(ix, "ANN_MIN_SEGMENTS", 1000)
    monkeypatch.setattr(ix, "PQ_MIN_SEGMENTS", 2000)


def build_pq_index(root, audio, x, extra=None):
    files = {"a.wav": ("a" * 64, x[:2500]), "b.wav": ("b" * 64, x[2500:])}
    files.update(extra or {})
    return build(root, audio, files, ident=identity(dim=PQ_DIM))


def test_policy_exact_then_ivf_flat_then_ivf_pq(small_thresholds):
    assert [ix.ann_kind(n) for n in (999, 1000, 1999, 2000, 10 ** 9)] == [None, "ivf-flat", "ivf-flat", "ivf-pq4",
                                                                          "ivf-pq4"]
    assert ix.pq_subquantizers(384) == 96 and ix.pq_subquantizers(32) == 8 and ix.pq_subquantizers(30) == 6


def test_compressed_index_reaches_the_recall_target_with_exact_scores(folders, small_thresholds):
    import faiss

    audio, root = folders
    x, held_out = np.split(clustered(4060), [4000])               # queries: new rows of the same clusters
    idx = build_pq_index(root, audio, x)
    info = idx.manifest["ann"]
    assert info["kind"] == "ivf-pq4" and isinstance(idx.ann, faiss.IndexIVFPQFastScan)
    assert info["recall_at_10"] >= ix.ANN_TARGET_RECALL and info["code_bytes"] == 4     # 8 sub-quantizers x 4 bits
    assert info["bytes"] == (root / "ivf.1.faiss").stat().st_size
    assert info["bytes"] < 4000 * PQ_DIM * 4 / 2                 # codes, not a second copy of the vectors
    q = held_out
    got, scores = idx.search_vectors(q, 10)
    exact, _ = search_exact(np.asarray(idx.vectors), q, 10)
    assert ix.recall_at_k(got, exact) >= ix.ANN_TARGET_RECALL - 0.02
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", np.asarray(idx.vectors)[got], q), atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)
    hits = load_index(root).search(x[3000], k=3)                   # a stored vector finds itself, score 1
    assert hits[0].file == "b.wav" and hits[0].start_s == 2.0 * 500 and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_calibration_probes_leave_their_own_row_out():
    x = clustered(3000, seed=4)
    ids, q = ix.calibration_probes(x, 40, seed=0)
    assert len(set(ids.tolist())) == 40 and np.array_equal(q, x[ids])
    rows, _ = search_exact(x, q, 11)
    assert np.array_equal(rows[:, 0], ids)                           # a stored row is its own nearest
    mine = ix.without_self(rows, ids, 10)
    assert mine.shape == (40, 10) and not np.any(mine == ids[:, None])
    np.testing.assert_array_equal(mine, rows[:, 1:])
    assert np.array_equal(ix.without_self(np.array([[7, 3]]), np.array([7]), 2), [[3, -1]])   # short: -1 pads


def test_reranking_all_candidates_equals_the_exact_search():
    x = clustered(3000, seed=2)
    ann = ix.train_pq(x)
    ann.add(x)
    q = ix.probe_queries(x, 20, seed=3)
    rows, scores = ix.search_pq(ann, x, q, 10, nprobe=ann.nlist, candidates=len(x))
    exact_rows, exact_scores = search_exact(x, q, 10)
    np.testing.assert_array_equal(rows, exact_rows)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-6)
    few_rows, _ = ix.search_pq(ann, x, q, 10, nprobe=1, candidates=10)
    assert ix.recall_at_k(few_rows, exact_rows) < 0.9                 # so the calibration has something to do
    cand = np.array([[5, -1, 2]])
    np.testing.assert_allclose(ix.exact_scores(x, x[:1], cand), [[x[5] @ x[0], -np.inf, x[2] @ x[0]]], rtol=1e-6)


def _codebooks(ann):
    import faiss

    ivf = faiss.downcast_index(ann)
    q = faiss.downcast_index(ivf.quantizer)
    return (faiss.vector_to_array(ivf.pq.centroids).copy(),
            faiss.rev_swig_ptr(q.get_xb(), ivf.nlist * ivf.d).copy())


def test_compressed_index_reuses_its_training_within_2x_and_retrains_beyond(folders, small_thresholds):
    audio, root = folders
    x = clustered(9000, seed=4)
    idx1 = build_pq_index(root, audio, x[:4000])
    pq1, centroids1 = _codebooks(idx1.ann)
    idx2 = build_pq_index(root, audio, x[:4000], {"c.wav": ("c" * 64, x[4000:4300])})
    assert idx2.manifest["ann"]["trained_on"] == 4000 and idx2.ann.ntotal == 4300
    assert idx2.manifest["ann"]["recall_at_10"] >= ix.ANN_TARGET_RECALL
    pq2, centroids2 = _codebooks(idx2.ann)
    np.testing.assert_array_equal(pq1, pq2)
    np.testing.assert_array_equal(centroids1, centroids2)
    got, _ = idx2.search_vectors(x[4100:4101], 1)                   # the new file's rows are in the codes
    assert got[0, 0] == 4100
    idx3 = build_pq_index(root, audio, x[:4000], {"c.wav": ("c" * 64, x[4000:9000])})   # 9,000 > 2 x 4,000
    assert idx3.manifest["ann"]["trained_on"] == 9000 and idx3.ann.nlist == int(2 * np.sqrt(9000))
    assert sorted(p.name for p in root.glob("ivf.*")) == ["ivf.3.faiss"]


def test_crash_after_the_ann_file_keeps_the_previous_generation(folders, small_thresholds, monkeypatch):
    audio, root = folders
    x = clustered(4600, seed=5)
    build_pq_index(root, audio, x[:4000])

    def boom(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ix, "atomic_write_text", boom)                   # killed between the ANN file and the manifest
        with pytest.raises(KeyboardInterrupt):
            build_pq_index(root, audio, x[:4000], {"c.wav": ("c" * 64, x[4000:])})
    assert (root / "ivf.2.faiss").is_file()
    old = load_index(root)
    assert old.manifest["generation"] == 1 and old.ann.ntotal == 4000 and len(old.search(x[10], k=5)) == 5
    with monkeypatch.context() as m:
        m.setattr(ix, "build_pq", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):                       # killed while training
            build_pq_index(root, audio, x[:4000], {"c.wav": ("c" * 64, x[4000:])})
    assert load_index(root).ann.ntotal == 4000
    idx = build_pq_index(root, audio, x[:4000], {"c.wav": ("c" * 64, x[4000:])})
    assert idx.ann.ntotal == 4600 and sorted(p.name for p in root.glob("ivf.*")) == ["ivf.2.faiss"]


def test_compressed_index_bytes_are_deterministic(tmp_path, folders, small_thresholds):
    audio, root = folders
    x = clustered(4000, seed=6)
    build_pq_index(root, audio, x)
    build_pq_index(tmp_path / "other.index", audio, x)
    assert (root / "ivf.1.faiss").read_bytes() == (tmp_path / "other.index" / "ivf.1.faiss").read_bytes()
    m1, m2 = (json.loads((r / "index.json").read_text()) for r in (root, tmp_path / "other.index"))
    m1.pop("audio_root"), m2.pop("audio_root")
    assert m1 == m2


def test_missing_or_corrupt_ann_file_is_named_and_a_rerun_repairs_it(folders, small_thresholds):
    audio, root = folders
    x = clustered(4000, seed=7)
    build_pq_index(root, audio, x)
    ann_file = root / "ivf.1.faiss"
    good = ann_file.read_bytes()
    ann_file.unlink()
    with pytest.raises(DataMissingError, match=r"missing its ivf-pq4 file ivf\.1\.faiss.*again.*no --rebuild"):
        load_index(root)
    ann_file.write_bytes(good[:len(good) // 2])
    with pytest.raises(ClaspkitError, match=r"ivf\.1\.faiss has [\d,]+ bytes, the manifest says"):
        load_index(root)
    ann_file.write_bytes(b"\0" * len(good))
    with pytest.raises(ClaspkitError, match=r"ivf\.1\.faiss is not a readable FAISS index"):
        load_index(root)
    manifest = json.loads((root / "index.json").read_text())
    manifest["ann"]["kind"] = "ivf-flat"                           # a well-formed file of another kind
    ann_file.write_bytes(good)
    (root / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(ClaspkitError, match="does not match the manifest"):
        load_index(root)
    ann_file.unlink()
    idx = build_pq_index(root, audio, x)                            # the writer re-trains from the stored vectors
    assert idx.manifest["ann"]["kind"] == "ivf-pq4" and idx.ann.ntotal == 4000


def test_old_8_bit_ivf_pq_index_still_searches_and_is_retrained_as_fast_scan(folders, small_thresholds):
    import faiss

    audio, root = folders
    x = clustered(4400, seed=9)
    build_pq_index(root, audio, x[:4000])
    manifest = json.loads((root / "index.json").read_text())
    quantizer = faiss.IndexFlatIP(PQ_DIM)                          # what the 8-bit builder wrote before fast scan
    old = faiss.IndexIVFPQ(quantizer, PQ_DIM, 64, 8, 8, faiss.METRIC_INNER_PRODUCT)
    old.pq.cp.min_points_per_centroid = old.cp.min_points_per_centroid = 1
    old.train(x[:4000])
    old.add(x[:4000])
    old.nprobe = 64
    faiss.write_index(old, str(root / "ivf.1.faiss"))
    manifest["ann"].update(kind="ivf-pq", nlist=64, nprobe=64, candidates=100,
                           bytes=(root / "ivf.1.faiss").stat().st_size)
    (root / "index.json").write_text(json.dumps(manifest))
    idx = load_index(root)
    assert type(idx.ann) is faiss.IndexIVFPQ
    got, scores = idx.search_vectors(x[:20], 10)
    exact, exact_scores = search_exact(x[:4000], x[:20], 10)
    assert ix.recall_at_k(got, exact) >= 0.9 and scores[:, 0] == pytest.approx(1.0, abs=1e-5)   # exact re-ranking
    grown = build_pq_index(root, audio, x[:4000], {"c.wav": ("c" * 64, x[4000:])})
    assert grown.manifest["ann"]["kind"] == "ivf-pq4" and isinstance(grown.ann, faiss.IndexIVFPQFastScan)
    assert grown.manifest["ann"]["trained_on"] == 4400                # another codec: trained afresh, not reused
    manifest = json.loads((root / "index.json").read_text())
    manifest["ann"]["kind"] = "ivf-hnsw"
    (root / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(ClaspkitError, match="unknown ANN kind 'ivf-hnsw'.*--rebuild"):
        load_index(root)


def test_old_ivf_flat_index_loads_and_grows_into_ivf_pq(folders, monkeypatch):
    audio, root = folders
    monkeypatch.setattr(ix, "ANN_MIN_SEGMENTS", 1000)
    x = clustered(9000, seed=8)
    build_pq_index(root, audio, x[:4000])                           # PQ_MIN_SEGMENTS is 1M: IVF-Flat
    manifest = json.loads((root / "index.json").read_text())
    assert manifest["ann"]["kind"] == "ivf-flat"
    for key in ("bytes", "dim"):                                    # written before the compressed index existed
        manifest["ann"].pop(key)
    (root / "index.json").write_text(json.dumps(manifest))
    old = load_index(root)
    assert old.manifest["ann"]["kind"] == "ivf-flat" and old.search(x[5], k=1)[0].score == pytest.approx(1, abs=1e-5)
    monkeypatch.setattr(ix, "PQ_MIN_SEGMENTS", 6000)
    idx = build_pq_index(root, audio, x[:4000], {"c.wav": ("c" * 64, x[4000:7000])})
    assert idx.manifest["ann"]["kind"] == "ivf-pq4" and idx.manifest["ann"]["trained_on"] == 7000


def test_compressed_benchmark_row_and_projection(tmp_path):
    from claspkit.bench.search import bench_compressed, projection

    row = bench_compressed(3000, PQ_DIM, [0.001] * 8, tmp_path)
    assert not (tmp_path / "vectors.npy").exists()                  # the memory-mapped vectors are deleted
    assert row["recall@10"] >= 0.8 and row["code_bytes"] == 4 and row["per_row_bytes"] == 12
    assert row["disk_bytes_per_segment"] > PQ_DIM * 4 > row["ram_bytes_per_segment"]
    assert row["total_warm_ms"][0] >= row["warm_ms"][0]
    p = projection(row, 100_000_000)
    assert p["nlist"] == 20_000
    assert p["ram_gb"] == pytest.approx((100_000_000 * (12 + 12) + 20_000 * row["per_list_bytes"]) / 1e9)
    assert p["disk_gb"] == pytest.approx(p["ram_gb"] + 100_000_000 * PQ_DIM * 4 / 1e9)


def _pq_over(x):
    ann = ix.train_pq(x)
    _pq._add_all(ann, x)
    return ann


def test_pq_candidates_are_the_same_on_one_thread_and_on_all(monkeypatch):
    """Fast scan searches one query on every core and breaks ties at the cut by thread timing (raw FAISS results
    differed for ~20% of these queries); the candidates must not."""
    import faiss

    ann = _pq_over(clustered(6000))
    q = clustered(200, seed=1)
    threads = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(1)
        one = ix.pq_candidates(ann, q, 64, 8, parallel=False)
        faiss.omp_set_num_threads(2)
        alone = np.vstack([ix.pq_candidates(ann, q[i:i + 1], 64, 8, parallel=True) for i in range(len(q))])
        assert faiss.downcast_index(_pq._ivf_of(ann)).implem == ix.PQ_SEARCH_IMPLEM
        batch = ix.pq_candidates(ann, q, 64, 8, parallel=True)
    finally:
        faiss.omp_set_num_threads(threads)
    np.testing.assert_array_equal(one, alone)
    np.testing.assert_array_equal(one, batch)
    assert (one >= 0).sum(axis=1).min() >= 48                  # only the tied tail is dropped
    assert all(len(set(r[r >= 0])) == (r >= 0).sum() for r in one)


def test_pq_candidates_keep_k_rows_among_many_identical_segments():
    x = clustered(4000)
    x[:300] = x[0]                                              # 300 copies of one segment (silence, say)
    ann = _pq_over(x)
    rows = ix.pq_candidates(ann, x[:1], 16, 4, keep=10)
    assert (rows >= 0).sum() >= 10
    rows, scores = ix.search_pq(ann, x, x[:1], 10, 4, 16)
    assert (rows >= 0).all() and np.allclose(scores, 1.0, atol=1e-5)


def test_only_a_long_scan_runs_on_every_core(monkeypatch):
    import faiss

    ann = _pq_over(clustered(6000))
    ivf = faiss.downcast_index(_pq._ivf_of(ann))
    imbalance = ivf.invlists.imbalance_factor()
    assert imbalance > 1.0                                          # the rule counts the big lists' extra rows
    rows = 8 * ivf.ntotal / ivf.nlist * imbalance
    monkeypatch.setattr(_pq, "PARALLEL_SCAN_MS", ix.pq_cost(rows, 0, ivf.code_size) * 1.01)
    assert not ix.parallel_scan(ivf, 8) and ix.parallel_scan(ivf, 16)
    ix.pq_candidates(ann, clustered(3, seed=1), 16, 8)
    assert ivf.implem == 0
    ix.pq_candidates(ann, clustered(3, seed=1), 16, 16)
    assert ivf.implem == ix.PQ_SEARCH_IMPLEM
    assert ix.parallel_scan(ivf, ivf.nlist) == (ix.pq_cost(ivf.ntotal, 0, ivf.code_size) >= _pq.PARALLEL_SCAN_MS)


def test_scanned_rows_count_the_probed_lists():
    import faiss

    ann = _pq_over(clustered(6000))
    ivf = faiss.extract_index_ivf(ann)
    q = clustered(20, seed=1)
    sizes = [ivf.invlists.list_size(i) for i in range(ivf.nlist)]
    _, lists = ivf.quantizer.search(q, 3)
    np.testing.assert_array_equal(ix.scanned_rows(ann, q, 3), [sum(sizes[j] for j in row) for row in lists])
    assert (ix.scanned_rows(ann, q, ivf.nlist) == ivf.ntotal).all()
