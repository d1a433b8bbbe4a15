import pandas as pd
import pytest

from claspkit.errors import ClaspkitError, DataMissingError
from claspkit.data.manifest import MANIFEST_COLUMNS, ManifestError, read_manifest, write_manifest


def _df(n=3):
    return pd.DataFrame({
        "id": [f"brown-ca01-{i:04d}" for i in range(n)], "source": "brown",
        "text": ['He said "yes", then left.', "Second, with a comma.", "Third one."][:n],
        "category": "news", "voice": ["espeak:en-us", "", "espeak:en-gb"][:n],
        "path": [f"audio/espeak/x/{i}.wav" for i in range(n)], "duration_s": [1.5, 2.0, 0.75][:n],
        "sample_rate": 16000, "split": ["train", "val", "test"][:n],
    })


def test_columns_are_exactly_the_contract():
    assert MANIFEST_COLUMNS == ("id", "source", "text", "category", "voice", "path", "duration_s",
                                "sample_rate", "split")


def test_roundtrip_keeps_values_and_empty_strings(tmp_path):
    df = _df()[list(MANIFEST_COLUMNS)[::-1]]  # any column order in, contract order out
    path = write_manifest(df, tmp_path / "m.csv")
    back = read_manifest(path)
    assert list(back.columns) == list(MANIFEST_COLUMNS)
    assert back["voice"].tolist() == ["espeak:en-us", "", "espeak:en-gb"]  # not NaN
    assert back["text"].tolist() == _df()["text"].tolist()
    assert back["duration_s"].tolist() == [1.5, 2.0, 0.75] and back["sample_rate"].tolist() == [16000] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]  # written atomically, no temp left


def test_missing_columns_are_listed(tmp_path):
    (tmp_path / "m.csv").write_text("id,text\nx,hello\n")
    with pytest.raises(ManifestError) as e:
        read_manifest(tmp_path / "m.csv")
    assert "['source', 'category', 'voice', 'path', 'duration_s', 'sample_rate', 'split']" in str(e.value)
    assert isinstance(e.value, ClaspkitError)


def test_bad_split_values_duplicates_and_numbers(tmp_path):
    bad = _df()
    bad.loc[1, "split"] = "dev"
    with pytest.raises(ManifestError, match=r"\['dev'\].*train', 'val', 'test'"):
        write_manifest(bad, tmp_path / "m.csv")
    dup = _df()
    dup.loc[2, "id"] = dup.loc[0, "id"]
    with pytest.raises(ManifestError, match="unique"):
        write_manifest(dup, tmp_path / "m.csv")
    nan = _df()
    nan["duration_s"] = ["1.0", "oops", "2"]
    with pytest.raises(ManifestError, match="duration_s"):
        write_manifest(nan, tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


def test_missing_file_tells_how_to_build(tmp_path):
    with pytest.raises(DataMissingError, match="build_corpus"):
        read_manifest(tmp_path / "nope.csv")
