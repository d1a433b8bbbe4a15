"""``claspkit index --transcribe`` and ``claspkit search --rank``: the transcript store (stored, resumed, kept in
step with the vectors), the three ranking modes, hit boundaries and the errors; fake backbones, the real VAD."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from claspkit import cli
from claspkit.errors import ClaspkitError, ParamError
from claspkit.search import query as S
from claspkit.search import rank as R
from claspkit.search.index import IndexWriter, load_index
from claspkit.search.transcripts import FOLDER, TranscriptWriter, open_transcripts
from search_fixtures import SENTENCES, SR, gap, write


@pytest.fixture
def asr(fakes, voice):
    """The fake ASR, told how long each sentence's segment is (its VAD pads included)."""
    from search_fixtures import FakeASR

    enc = fakes.setdefault(("asr", "fake-asr"), FakeASR("fake-asr"))
    enc.known = {t: len(v) / SR + 0.2 for t, v in zip(SENTENCES, voice)}
    return enc


def _store_covers(out):
    idx = load_index(out)
    store = open_transcripts(out)
    return idx, store, store.align(idx)


def test_transcripts_are_stored_with_word_times_and_reused(library, ckpt, fakes, asr, tmp_path):
    out = tmp_path / "idx"
    s = S.build_index(library, ckpt, out, progress=False, transcribe="fake-asr")
    t = s.transcripts
    assert (t.files_transcribed, t.segments_transcribed, t.segments, t.files_reused) == (3, 4, 4, 0)
    assert asr.items == 4 and "transcripts (fake-asr)" in str(s) and s.as_dict()["transcripts"]["segments"] == 4
    idx, store, row_map = _store_covers(out)
    assert (row_map >= 0).all()
    entries = store.entries(row_map)
    texts = [e["text"] for e in entries]
    a_rows = [r for r in range(len(idx)) if idx._paths[idx.file_of_row[r]] == "a.wav"]
    assert [texts[r] for r in a_rows] == SENTENCES[:2]              # each segment says its own sentence
    for r, e in enumerate(entries):                                 # word times are in the file, inside the segment
        assert e["words"] and idx.start_s[r] <= e["words"][0][1] < e["words"][-1][2] <= idx.end_s[r] + 1e-3
    np.testing.assert_allclose(np.linalg.norm(store.vectors, axis=1), 1.0, atol=1e-5)

    again = S.build_index(library, ckpt, out, progress=False, transcribe="fake-asr")
    assert asr.items == 4 and again.transcripts.files_reused == 3 and again.transcripts.files_transcribed == 0


def test_interrupted_transcription_resumes_and_follows_the_files(library, ckpt, fakes, asr, tmp_path, voice):
    out = tmp_path / "idx"
    S.build_index(library, ckpt, out, progress=False, transcribe="fake-asr")
    for i in range(3):
        write(library / f"new{i}.wav", gap(0.1), voice[i + 1])
    asr.fail_at = asr.items + 2                                   # dies on the third new file
    with pytest.raises(RuntimeError, match="simulated"):
        S.build_index(library, ckpt, out, progress=False, transcribe="fake-asr")
    assert len(load_index(out).files) == 7                          # the vectors were committed before
    asr.fail_at = None
    n = asr.items
    s = S.build_index(library, ckpt, out, progress=False, transcribe="fake-asr")
    assert (s.transcripts.files_resumed, s.transcripts.files_transcribed, asr.items - n) == (2, 1, 1)
    assert s.files_embedded == 0 and (_store_covers(out)[2] >= 0).all()

    (library / "sub" / "c.m4a").unlink()                            # removed: its transcript goes too
    shutil.copy(library / "a.wav", library / "a-renamed.wav")       # same content: nothing to transcribe
    (library / "a.wav").unlink()
    write(library / "b.flac", voice[2], gap(1.0), voice[0], fmt="FLAC")   # changed: 2 new segments
    n = asr.items
    S.build_index(library, ckpt, out, progress=False, transcribe="fake-asr")
    idx, store, row_map = _store_covers(out)
    assert asr.items - n == 2 and (row_map >= 0).all()
    assert set(store.by_sha) == {f["sha256"] for f in idx.files.values() if f["n_segments"]}


def test_without_transcribe_nothing_is_transcribed_and_the_default_rank_is_clasp(library, ckpt, fakes, asr,
                                                                                  tmp_path, voice):
    out = tmp_path / "idx"
    S.build_index(library, ckpt, out, progress=False)
    assert not (out / FOLDER).exists() and asr.items == 0 and "asr" not in fakes.options
    assert {h.rank_mode for h in S.search(out, "steam engine", k=3)} == {"clasp"}
    with pytest.raises(ClaspkitError, match="has none; re-index .*--transcribe"):
        S.search(out, "steam engine", rank="transcript")

    S.build_index(library, ckpt, out, progress=False, transcribe="fake-asr")
    assert {h.rank_mode for h in S.search(out, "steam engine", k=3)} == {"hybrid"}
    write(library / "late.wav", voice[4])                           # indexed without --transcribe: not covered
    generation = json.loads((out / FOLDER / "manifest.json").read_text())["generation"]
    S.build_index(library, ckpt, out, progress=False)
    assert json.loads((out / FOLDER / "manifest.json").read_text())["generation"] == generation
    assert {h.rank_mode for h in S.search(out, "steam engine", k=3)} == {"clasp"}
    with pytest.raises(ClaspkitError, match="1 of 5 segments .* have none"):
        S.search(out, "steam engine", rank="hybrid")
    hits = S.search(out, "steam engine", k=5, rank="clasp")         # the covered files still show their words
    assert sum(h.transcript is not None for h in hits) == 4


def test_an_asr_without_word_times_is_refused_before_any_work(library, ckpt, fakes, tmp_path):
    with pytest.raises(ParamError, match="no word timestamps"):
        S.build_index(library, ckpt, tmp_path / "idx", progress=False, transcribe="no-words")
    assert not (tmp_path / "idx").exists()


def test_cli_prints_the_transcript_and_json_carries_the_words(library, ckpt, fakes, asr, tmp_path, capsys):
    out = tmp_path / "idx"
    assert cli.main(["index", str(library), "--model", str(ckpt), "--out", str(out), "--transcribe", "fake-asr",
                     "--quiet"]) == 0
    assert "transcripts (fake-asr)" in capsys.readouterr().out
    assert cli.main(["search", str(out), "steam engine", "-k", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2].strip().strip('"') in SENTENCES                 # under the first hit
    assert cli.main(["search", str(out), "steam engine", "-k", "2", "--json", "--rank", "transcript"]) == 0
    payload = json.loads(capsys.readouterr().out)
    hit = payload["hits"][0]
    assert payload["rank"] == "transcript" and hit["rank_mode"] == "transcript"
    assert hit["transcript"]["text"] in SENTENCES and all(len(w) == 3 for w in hit["transcript"]["words"])
    assert hit["start_s"] == pytest.approx(hit["transcript"]["words"][0][1] - R.WORD_PAD_S, abs=2e-3)
    assert hit["segment"]["start_s"] < hit["start_s"] < hit["end_s"] < hit["segment"]["end_s"]
    assert set(hit["scores"]) == {"clasp", "transcript"} and hit["scores"]["transcript"] == pytest.approx(hit["score"])

    plain = tmp_path / "plain"
    assert cli.main(["index", str(library), "--model", str(ckpt), "--out", str(plain), "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["search", str(plain), "steam engine", "--rank", "transcript"]) == 2
    err = capsys.readouterr().err
    assert "has none" in err and "--transcribe" in err and len(err.strip().splitlines()) == 1
    assert cli.RANKS == R.RANKS


# ---------------------------------------------------------------------- ranking on a constructed index
def _constructed(tmp_path):
    """4 segments of one file; CLASP row r is e_r, its transcript's vector e_(4+r), so a query's first four
    components set the CLASP order and the next four the transcript order, independently."""
    identity = {"model": {"checkpoint_sha256": "x", "backbones": {"text": "t"}, "cache_ids": {"text": "t/v1"}},
                "segmentation": "s", "dim": 16}
    spans = np.array([[0, 1], [2, 3], [4, 5], [6, 7]], np.float32)
    eye = np.eye(16, dtype=np.float32)
    with IndexWriter(tmp_path / "idx", identity, tmp_path) as w:
        w.stage("sha", eye[:4], spans, 8.0)
        w.commit([{"path": "f.wav", "sha256": "sha", "size": 1, "mtime_ns": 1, "duration_s": 8.0}])
    tw = TranscriptWriter(tmp_path / "idx", {"asr": "a", "text": {"name": "t", "cache_id": "t/v1"}}, 16)
    tw.stage("sha", spans, [f"t{r}" for r in range(4)], [[] for _ in range(4)], eye[4:8])
    tw.commit(["sha"])
    idx = load_index(tmp_path / "idx")
    store = open_transcripts(idx.root)
    return idx, store, store.align(idx)


# (clasp components, transcript components, gold): CLASP is right on the first, the transcripts on the second
QUERIES = {
    "q0": ((.4, .2, .3, .1), (.3, .4, .2, .1), 0),
    "q1": ((.2, .1, .3, .4), (.2, .3, .4, .1), 2),
}


def _q(c, t):
    q = np.zeros((1, 16), np.float32)
    q[0, :4], q[0, 4:8] = c, t
    return q / np.linalg.norm(q)


def test_each_rank_mode_and_hybrid_beats_both_on_a_constructed_case(tmp_path):
    idx, store, row_map = _constructed(tmp_path)
    q0 = _q(*QUERIES["q0"][:2])
    assert R.rank_rows(idx, q0, 4, "clasp")[0].tolist() == [0, 2, 1, 3]
    assert R.rank_rows(idx, q0, 4, "transcript", store, row_map)[0].tolist() == [1, 0, 2, 3]
    rows, scores = R.rank_rows(idx, q0, 4, "hybrid", store, row_map, weight=0.5)
    assert rows[0] == 0 and scores[0] == pytest.approx(61 * (0.5 / 61 + 0.5 / 62))
    assert R.rank_rows(idx, q0, 4, "hybrid", store, row_map, weight=0.0)[0].tolist() == [1, 0, 2, 3]
    assert R.rank_rows(idx, q0, 4, "hybrid", store, row_map, weight=1.0)[0].tolist() == [0, 2, 1, 3]

    def mrr(mode):
        ranks = [1 + R.rank_rows(idx, _q(c, t), 4, mode, store, row_map, weight=0.5)[0].tolist().index(g)
                 for c, t, g in QUERIES.values()]
        return np.mean([1 / r for r in ranks]), np.mean([r == 1 for r in ranks])

    assert mrr("clasp") == (0.75, 0.5) and mrr("transcript") == (0.75, 0.5)
    assert mrr("hybrid") == (1.0, 1.0)


def test_hybrid_weight_file_names_the_validation_data_that_chose_it():
    info = R.hybrid_weight()
    assert 0 <= info["clasp_weight"] <= 1 and info["rrf_k"] == R.RRF_K
    chosen = info["chosen_by"]
    assert chosen["function"] == "claspkit.evaluation.transcript_search.choose_hybrid_weight"
    assert "minus notebook 09's test sample" in chosen["data"]
    best = max(chosen["by_weight"].values(), key=lambda m: m["mrr"])["mrr"]
    assert chosen["by_weight"][f"{info['clasp_weight']:g}"]["mrr"] == best


def test_staging_refuses_rows_that_do_not_match_the_segments(tmp_path):
    tw = TranscriptWriter(tmp_path / "idx", {"asr": "a", "text": "t"}, 16)
    spans = np.array([[0, 1], [2, 3]], np.float32)
    with pytest.raises(ClaspkitError, match="transcript vectors for 2 segments"):
        tw.stage("sha", spans, ["a", "b"], [[], []], np.eye(16, dtype=np.float32)[:1])
    with pytest.raises(ClaspkitError, match="for 2 segments"):
        tw.stage("sha", spans, ["a"], [[]], np.eye(16, dtype=np.float32)[:1])


def test_rank_errors_name_the_fix(tmp_path):
    idx, store, row_map = _constructed(tmp_path)
    with pytest.raises(ParamError, match="rank must be one of"):
        R.check_rank("hybird", row_map, idx.root)
    with pytest.raises(ClaspkitError, match="has none; re-index"):
        R.check_rank("transcript", None, idx.root)
    assert R.default_rank(row_map) == "hybrid" and R.default_rank(None) == "clasp"
    idx.manifest["identity"]["model"]["cache_ids"]["text"] = "t/v2"     # rebuilt with another text encoder
    assert (store.align(idx) == -1).all()
    with pytest.raises(ClaspkitError, match="4 of 4 segments .* another text encoder"):
        R.check_rank("hybrid", store.align(idx), idx.root)
    assert R.default_rank(np.array([0, -1])) == "clasp"


# ---------------------------------------------------------------------- boundaries
def test_word_bounds_pad_and_stay_inside_the_segment():
    words = [["hello", 1.2, 1.5], ["there", 1.6, 2.0]]
    assert R.word_bounds(words, 1.0, 3.0) == (1.1, 2.1)
    assert R.word_bounds(words, 1.15, 2.05) == (1.15, 2.05)
    assert R.word_bounds([], 1.0, 3.0) == (1.0, 3.0)


def test_finer_vad_cut_narrows_an_untranscribed_segment(tmp_path, voice):
    path = tmp_path / "talk.wav"
    sf.write(path, np.concatenate([gap(1.5), voice[0], gap(1.5)]), SR)
    end = 3.0 + len(voice[0]) / SR
    lo, hi = R.vad_bounds(path, 0.5, end - 0.5)                     # a segment with 1 s of silence each side
    assert 1.3 < lo < 1.8 and end - 1.9 < hi < end - 1.3
    assert end - 1.0 > 2 * R.EDGE_S > end - 2.2                    # only its edges were read, then all of it:
    assert R.vad_bounds(path, 1.1, end - 1.1) == pytest.approx((lo, hi), abs=0.1)      # the same speech
    assert R.vad_bounds(None, 0.5, 2.0) == (0.5, 2.0)               # the file is not found: the segment's edges
    assert R.vad_bounds(tmp_path / "gone.wav", 0.5, 2.0) == (0.5, 2.0)
    flac = tmp_path / "talk.m4a"
    from conftest import write_m4a

    write_m4a(flac, np.concatenate([gap(1.5), voice[0], gap(1.5)]), SR)   # no seeking: the head is decoded
    lo2, hi2 = R.vad_bounds(flac, 0.5, end - 0.5)
    assert abs(lo2 - lo) < 0.15 and abs(hi2 - hi) < 0.15


def test_search_hits_without_transcripts_use_the_finer_cut(library, ckpt, fakes, tmp_path):
    out = tmp_path / "idx"
    S.build_index(library, ckpt, out, progress=False)
    for h, raw in zip(S.search(out, "steam engine", k=4), S.search(out, "steam engine", k=4, refine=False)):
        assert (h.file, h.segment_start_s, h.segment_end_s) == (raw.file, raw.start_s, raw.end_s)
        assert raw.start_s <= h.start_s < h.end_s <= raw.end_s and h.transcript is None
