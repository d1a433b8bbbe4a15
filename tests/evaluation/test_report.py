"""Table 2 assembled from stage result files, beside the paper's numbers."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from claspkit.evaluation import paper, report
from claspkit.errors import ClaspkitError, DataMissingError
from claspkit.evaluation.results import write_stage


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASPKIT_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CLASPKIT_ROOT", str(tmp_path))
    return tmp_path


def _row(stage, system, protocol, h1, mrr, meanr, f1, **kw):
    return {"stage": stage, "system": system, "protocol": protocol, "hits@1": h1, "hits@5": 1.0, "hits@10": 1.0,
            "mrr": mrr, "meanr": meanr, "macro_f1": f1, "n": 40, **kw}


def _write_stages_1_and_3(preset):
    write_stage(preset, "stage1", [
        _row("stage1", "spectrogram only", "candidates", 0.30, 0.55, 2.1, 0.50, branches="image"),
        _row("stage1", "speech only", "candidates", 0.80, 0.88, 1.3, 0.70, branches="speech"),
        _row("stage1", "combined", "candidates", 0.85, 0.90, 1.2, 0.72, branches="combined"),
        _row("stage1", "combined", "full", 0.40, 0.52, 6.0, 0.60, branches="combined"),
    ])
    write_stage(preset, "stage3_contrastive", [
        _row("stage3_contrastive", "CLASP (contrastive)", "full", 0.90, 0.93, 3.5, 0.70, loss="contrastive"),
    ])
    write_stage(preset, "stage3_asr", [
        _row("stage3_asr", "cascade whisper-base ASR + e5", "full", 0.95, 0.96, 2.0, 0.65,
             kind="cascade", asr_backbone="whisper-base", wer=0.2),
    ])
    write_stage(preset, "efficiency", [
        {"stage": "efficiency", "system": "CLASP", "kind": "clasp", "weight_bytes": 80e6, "seconds": 2.0,
         "s_per_utt": 0.1, "n": 20},
        {"stage": "efficiency", "system": "cascade", "kind": "cascade", "weight_bytes": 160e6, "seconds": 3.0,
         "s_per_utt": 0.15, "n": 20}], {"size_ratio": 2.0})


def test_paper_table_is_the_published_one():
    t = paper.published_table2()
    assert len(t) == 19 and list(t.stage.value_counts().sort_index()) == [3, 8, 4, 4]
    clasp = t.set_index("system").loc["CLASP (ours)"]
    assert (clasp["hits@1"], clasp.mrr, clasp.meanr, clasp.macro_f1) == (0.940, 0.955, 7.710, 0.710)
    assert t[t.stage <= 2].meanr.isna().all() and t[t.stage >= 3].meanr.notna().all()
    assert paper.claims()["size_ratio"] == pytest.approx(2.1)


def test_table2_puts_paper_numbers_and_deltas_beside_ours(runs):
    _write_stages_1_and_3("t")
    df = report.table2("t")
    ours = df[df.system.notna()].set_index(["system", "protocol"])
    spec = ours.loc[("spectrogram only", "candidates")]
    assert spec.paper_system == "Spectrogram-Based Model"
    assert spec["paper_hits@1"] == 0.399 and spec["delta_hits@1"] == pytest.approx(0.30 - 0.399)
    assert spec.delta_macro_f1 == pytest.approx(0.50 - 0.574)
    assert math.isnan(spec.paper_meanr) and math.isnan(spec.delta_meanr)  # the paper has no stage-1 meanR
    # the full-gallery stage-1 row has no paper counterpart (the paper used 5 candidates there)
    full = ours.loc[("combined", "full")]
    assert pd.isna(full.paper_system) and pd.isna(full["paper_hits@1"]) and "candidates" in full.note
    clasp = ours.loc[("CLASP (contrastive)", "full")]
    assert clasp.paper_system == "CLASP (ours)" and clasp.delta_meanr == pytest.approx(3.5 - 7.71)
    asr = ours.loc[("cascade whisper-base ASR + e5", "full")]
    assert asr.paper_system == "HuBERT ASR" and asr["delta_hits@1"] == pytest.approx(0.95 - 0.953)
    # paper rows without a system of ours: listed with blank 'ours' columns, never numbers
    lasp = df[df.paper_system == "LASP (ours)"].iloc[0]
    assert pd.isna(lasp.system) and pd.isna(lasp["hits@1"]) and lasp["paper_hits@1"] == 0.878
    assert "no system of ours" in lasp.note
    # rows come in the paper's order within a stage, stage by stage
    assert list(df.stage) == sorted(df.stage)
    s1 = df[(df.stage == 1) & df.paper_system.notna()].paper_system.tolist()
    assert s1 == ["Spectrogram-Based Model", "Self-Supervised Audio Model", "Combined Audio-Spectrogram Model"]
    # the efficiency file is not a Table-2 stage
    assert "efficiency" not in set(df.source.dropna())


def test_missing_stages_are_listed_not_crashed(runs):
    _write_stages_1_and_3("t")
    df = report.table2("t")
    assert df.attrs["missing_stages"] == [2, 4]
    s4 = df[df.stage == 4]
    assert len(s4) == 4 and s4.system.isna().all() and s4["hits@1"].isna().all()
    assert s4.note.str.contains("stage 4 not run").all()
    # nothing written at all: every paper row, every stage missing
    empty = report.table2("nothing")
    assert empty.attrs["missing_stages"] == [1, 2, 3, 4] and len(empty) == 19 and empty["hits@1"].isna().all()


def test_stage2_and_stage4_role_mapping(runs):
    write_stage("m", "stage2", [
        _row("stage2", "e5-small-multilingual + whisper-base / concat", "candidates", 0.99, 0.995, 1.0, 0.9,
             speech_backbone="whisper-base", text_backbone="e5-small-multilingual", fusion="concat"),
        _row("stage2", "muse-multilingual + whisper-tiny.en / gating", "candidates", 0.9, 0.95, 1.1, 0.8),
        _row("stage2", "minilm-en + whisper-base / concat", "candidates", 0.9, 0.95, 1.1, 0.8),
    ])
    write_stage("m", "stage4", [
        _row("stage4", "CLASP fa queries", "full", 0.5, 0.6, 9.0, 0.6, language="fa", direction="text->speech"),
        _row("stage4", "CLASP German", "full", 0.6, 0.7, 8.0, 0.6),
        _row("stage4", "cascade de", "full", 0.6, 0.7, 8.0, 0.6, language="de", kind="cascade"),
        _row("stage4", "CLASP fr speech, English queries", "full", 0.6, 0.7, 8.0, 0.6, language="fr",
             direction="speech->text"),
    ])
    df = report.table2("m").set_index("system")
    assert df.loc["e5-small-multilingual + whisper-base / concat", "paper_system"] == "LaBSE + HuBERT - Concatenation"
    assert df.loc["muse-multilingual + whisper-tiny.en / gating", "paper_system"] == "XLM-RoBERTa + Wav2Vec2 - Gating"
    assert pd.isna(df.loc["minilm-en + whisper-base / concat", "paper_system"])  # English-only: no role
    assert df.loc["CLASP fa queries", "paper_system"] == "Persian"
    assert df.loc["CLASP fa queries", "delta_meanr"] == pytest.approx(9.0 - 26.96)
    assert df.loc["CLASP German", "paper_system"] == "German"
    assert pd.isna(df.loc["cascade de", "paper_system"])
    assert pd.isna(df.loc["CLASP fr speech, English queries", "paper_system"])
    assert df.loc["cascade de", "note"] == "no counterpart in the paper"


def test_write_table2_and_readme_block(runs):
    _write_stages_1_and_3("t")
    paths = report.write_table2("t", runs / "out")
    md = paths["markdown"].read_text()
    assert "| 1 | spectrogram only | candidates | Spectrogram-Based Model | 0.300 | 0.399 | -0.099 |" in md
    assert "Missing stages (no result file yet): 2, 4." in md
    assert str(runs) not in md and "nan" not in md  # no machine paths, no NaN in generated text
    csv = pd.read_csv(paths["csv"])
    assert len(csv) == len(report.table2("t")) and "delta_hits@1" in csv.columns
    block = report.readme_results("t")
    assert "| 3 | CLASP (contrastive) | CLASP (ours) | full | 0.900 (0.940) | 0.930 (0.955) | 3.500 (7.710) |" in block
    assert "Not run yet (no result file): stage 2, 4." in block and "| 4 |" not in block
    assert "nan" not in block
    assert "the cascade is 2.00x the size" in block and "CLASP takes 33% less time" in block
    assert block == report.readme_results("t")  # deterministic


def test_paper_numbers_only_beside_the_papers_direction_and_stage_table(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASPKIT_RUNS", str(tmp_path))
    from claspkit.evaluation import report, results

    base = {"stage": "stage3", "system": "CLASP (contrastive)", "loss": "contrastive", "protocol": "full",
            "hits@1": 0.5, "mrr": 0.6, "meanr": 3.0, "macro_f1": 0.4, "n": 10}
    results.write_stage("t", "stage3_contrastive", [{**base, "direction": "speech->text"},
                                                    {**base, "direction": "text->speech", "hits@1": 0.7}])
    df = report.table2("t")
    ours = df[df.system == "CLASP (contrastive)"].set_index("direction")
    assert ours.loc["speech->text", "paper_hits@1"] == pytest.approx(0.940)
    assert pd.isna(ours.loc["text->speech", "paper_hits@1"])
    view = report.stage_table("t", 3)
    assert list(view.index) == ["CLASP (contrastive)"]
    assert view.loc["CLASP (contrastive)", "delta_hits@1"] == pytest.approx(0.5 - 0.940)


def test_attention_head_is_beyond_the_paper_not_matched_to_its_rows(runs):
    _write_stages_1_and_3("t")
    write_stage("t", "stage3_attention", [
        _row("stage3", "CLASP attention", "full", 0.93, 0.95, 2.0, 0.70, loss="contrastive", fusion="attention")])
    df = report.table2("t")
    att = df[df["system"] == "CLASP attention"].iloc[0]
    assert pd.isna(att["paper_system"]) and att["note"] == "no counterpart in the paper"
    assert report.beyond_paper("t") is None  # no benchmark run yet: no block
    ci = {"hits@1_ci": [0.9, 0.96], "mrr_ci": [0.92, 0.97]}
    write_stage("t", "retrieval_bench", [
        {"system": "CLASP attention (1 layer, frames)", "kind": "attention", "fusion": "attention", "n": 300,
         "hits@1": 0.93, "mrr": 0.95, **ci, "s_per_utt": 0.05, "speedup_vs_cascade": 6.0},
        {"system": "CLASP stats (frames' mean + std, 4096-wide MLP)", "kind": "stats", "fusion": "stats", "n": 300,
         "hits@1": 0.94, "mrr": 0.95, **ci, "s_per_utt": 0.05, "speedup_vs_cascade": 6.0,
         "speedup_vs_cascade_ci": [5.5, 6.5],
         "vs_cascade": {"hits@1": [0.03, 0.01, 0.05], "mrr": [0.03, 0.02, 0.04], "only_this_first": 14,
                        "only_ref_first": 5}},
        {"system": "ASR cascade (whisper-base)", "kind": "cascade", "n": 300, "hits@1": 0.91, "mrr": 0.92,
         **ci, "s_per_utt": 0.3, "speedup_vs_cascade": 1.0}],
        {"n_timing": 24, "speech_backbone": "whisper-base", "text_backbone": "muse-multilingual",
         "scaling": [{"train_items": 1200, "hits@1": 0.5, **ci}, {"train_items": 2400, "hits@1": 0.93, **ci}]})
    block = report.readme_results("t")
    assert ("| CLASP attention (1 layer, frames) | 300 | 0.930 [0.900, 0.960] | 0.950 [0.920, 0.970] | 50 | 6.00 |"
            in block)
    assert "| 0.950 [0.920, 0.970] | 50 | 6.00 [5.50, 6.50] |" in block  # a run with timing CIs shows them
    assert "whisper-base -> muse-multilingual" in block and "24 utterances" in block
    assert "Beyond the paper: the attention head and the stats head over the speech frames" in block
    assert "frames beside the cascade, on the same full test gallery" in block   # no paper-head row in this run
    assert "HITS@1: 1,200 pairs 0.500 [0.900, 0.960]; 2,400 pairs 0.930 [0.900, 0.960]." in block
    assert ("queries that only one of the two ranks first): CLASP stats: hits@1 +0.030 [+0.010, +0.050], mrr +0.030 "
            "[+0.020, +0.040]; first only for CLASP stats 14, only for the cascade 5." in block)
    md = report.write_table2("t", runs / "out")["markdown"].read_text()
    assert "## Beyond the paper" in md and "| ASR cascade (whisper-base) | 300 |" in md
    # a larger preset's benchmark fills only its own README block
    from claspkit import readme

    (runs / "README.md").write_text("intro\n<!-- bench-t:start -->\nold\n<!-- bench-t:end -->\n"
                                    "<!-- results:start -->\nkept\n<!-- results:end -->\n")
    readme.update_bench("t")
    text = (runs / "README.md").read_text()
    assert "| CLASP attention (1 layer, frames) | 300 |" in text and "old" not in text and "\nkept\n" in text
    with pytest.raises(DataMissingError, match="bench.retrieval --preset nothing"):
        readme.update_bench("nothing")
    # the parameter reference is the schema: regenerated alone, with no run's results
    from claspkit.config import describe

    (runs / "README.md").write_text("<!-- params:start -->\nstale\n<!-- params:end -->\n"
                                    "<!-- results:start -->\nkept\n<!-- results:end -->\n")
    assert readme.main(["--params"]) == 0
    text = (runs / "README.md").read_text()
    assert describe().strip() in text and "stale" not in text and "\nkept\n" in text
    # a block is regenerated on whichever docs page holds it; with none, the error names where to add it
    (runs / "README.md").write_text("intro, no blocks\n")
    (runs / "docs").mkdir()
    (runs / "docs" / "parameters.md").write_text("# Parameters\n<!-- params:start -->\nstale\n<!-- params:end -->\n")
    assert readme.main(["--params"]) == 0
    assert describe().strip() in (runs / "docs" / "parameters.md").read_text()
    with pytest.raises(ClaspkitError, match="docs/\\*.md; add the markers"):
        readme.update_bench("t")
