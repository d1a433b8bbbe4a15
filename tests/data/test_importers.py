import numpy as np
import pytest
import soundfile as sf

from claspkit.errors import DataMissingError
from claspkit.data.importers import import_common_voice, import_fleurs
from claspkit.data.manifest import MANIFEST_COLUMNS, validate_manifest


def _tone(path, seconds, sr=16000, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.2 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr).astype(np.float32)
    if fmt == "mp3":
        sf.write(path, x, sr, format="MP3", subtype="MPEG_LAYER_III")
    else:
        sf.write(path, x, sr, subtype="PCM_16")


def make_common_voice(root, mp3=True):
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\n"
    rows = {
        "train": [("spk1", "common_voice_en_1", 'He said "hello" twice.', 1.0),
                  ("spk2", "common_voice_en_2", "A second sentence.", 0.5)],
        "dev": [("spk3", "common_voice_en_3", "Dev sentence here.", 0.75)],
        "test": [("spk1", "common_voice_en_4", "Test sentence here.", 1.25)],
    }
    for split, items in rows.items():
        lines = []
        for spk, stem, text, secs in items:
            name = f"{stem}.mp3" if mp3 else f"{stem}.wav"
            _tone(root / "clips" / name, secs, sr=48000 if mp3 else 16000, fmt="mp3" if mp3 else None)
            lines.append(f"{spk}\t{name}\t{text}\t2\t0\t\t\t\n")
        (root / f"{split}.tsv").write_text(header + "".join(lines))
    return root


def make_fleurs(root):
    rows = {
        "train": [("1", "10001.wav", "Raw Transcription, One.", 1.0),
                  ("1", "10002.wav", "Raw Transcription, One.", 0.5)],
        "dev": [("2", "20001.wav", "The dev sentence.", 0.75)],
        "test": [("3", "30001.wav", "The test sentence.", 1.5)],
    }
    for split, items in rows.items():
        lines = []
        for sid, name, text, secs in items:
            _tone(root / "audio" / split / name, secs)
            lines.append(f"{sid}\t{name}\t{text}\t{text.lower()}\tt h e |\t{int(secs * 16000)}\tMALE\n")
        (root / f"{split}.tsv").write_text("".join(lines))
    return root


def test_common_voice_keeps_official_splits(tmp_path):
    df = import_common_voice(make_common_voice(tmp_path / "cv"), progress=False)
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert df["id"].tolist() == [f"cv-common_voice_en_{i}" for i in range(1, 5)]
    assert df["split"].tolist() == ["train", "train", "val", "test"]
    assert df["text"].iloc[0] == 'He said "hello" twice.'  # quotes survive (QUOTE_NONE)
    assert (df["source"] == "common_voice").all() and (df["category"] == "common_voice").all()
    assert df["voice"].iloc[0] == df["voice"].iloc[3] != df["voice"].iloc[1]  # one hash per speaker
    assert df["duration_s"].tolist() == pytest.approx([1.0, 0.5, 0.75, 1.25], abs=0.06)  # mp3 padding
    assert (df["sample_rate"] == 48000).all()
    validate_manifest(df)


def test_fleurs_layout_without_header(tmp_path):
    df = import_fleurs(make_fleurs(tmp_path / "en_us"), progress=False)
    assert df["id"].tolist() == ["fleurs-train-10001", "fleurs-train-10002", "fleurs-dev-20001", "fleurs-test-30001"]
    assert df["split"].tolist() == ["train", "train", "val", "test"]
    assert df["text"].iloc[0] == "Raw Transcription, One."  # the raw, not the normalized, transcription
    assert df["duration_s"].tolist() == pytest.approx([1.0, 0.5, 0.75, 1.5])
    assert all(p.startswith(str(tmp_path)) for p in df["path"])
    validate_manifest(df)


def test_missing_folder_and_files_name_the_layout(tmp_path):
    with pytest.raises(DataMissingError, match="(?s)does not exist.*clips"):
        import_common_voice(tmp_path / "nothing", progress=False)
    cv = make_common_voice(tmp_path / "cv", mp3=False)
    (cv / "dev.tsv").unlink()
    with pytest.raises(DataMissingError) as e:
        import_common_voice(cv, progress=False)
    assert "dev.tsv" in str(e.value) and "expected Common Voice layout" in str(e.value)

    fl = make_fleurs(tmp_path / "fl")
    (fl / "audio" / "test" / "30001.wav").unlink()
    with pytest.raises(DataMissingError) as e:
        import_fleurs(fl, progress=False)
    assert "30001.wav" in str(e.value) and "expected FLEURS layout" in str(e.value)
    for f in (fl / "audio" / "test").iterdir():
        f.unlink()
    (fl / "audio" / "test").rmdir()
    with pytest.raises(DataMissingError, match=r"audio.test"):
        import_fleurs(fl, progress=False)


def test_common_voice_tsv_without_needed_columns(tmp_path):
    cv = make_common_voice(tmp_path / "cv", mp3=False)
    (cv / "test.tsv").write_text("client_id\tfile\ttext\nx\ty\tz\n")
    with pytest.raises(DataMissingError, match="path"):
        import_common_voice(cv, progress=False)
