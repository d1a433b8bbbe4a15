"""Import real recorded corpora (Common Voice, FLEURS) from a folder the user already has.

Neither ships in any package and this project never downloads them; a user who has them
points ``common_voice_dir`` / ``fleurs_dir`` at the extracted folder. Their official splits
are kept (``dev`` becomes ``val``). Audio paths are stored absolute, and durations are read
from the files themselves, so a row is only produced for audio that really exists.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd

from claspkit.errors import ClaspkitError, DataMissingError
from claspkit.data.manifest import MANIFEST_COLUMNS

__all__ = ["SPLIT_FILES", "COMMON_VOICE_LAYOUT", "FLEURS_LAYOUT", "import_common_voice", "import_fleurs"]

SPLIT_FILES = {"train": "train", "dev": "val", "test": "test"}

COMMON_VOICE_LAYOUT = """expected Common Voice layout (one language folder of a cv-corpus release):
  <folder>/train.tsv, <folder>/dev.tsv, <folder>/test.tsv   (tab-separated, header with columns path, sentence, client_id)
  <folder>/clips/<path>                                    (the mp3 clips named in the tsv files)"""  # noqa: E501

FLEURS_LAYOUT = """expected FLEURS layout (one language folder, e.g. fleurs/data/en_us, with the audio archives extracted):
  <folder>/train.tsv, <folder>/dev.tsv, <folder>/test.tsv   (tab-separated, no header: id, file name, raw transcription,
                                                             normalized transcription, characters, num_samples, gender)
  <folder>/audio/train/<file name>, <folder>/audio/dev/..., <folder>/audio/test/...   (wav files)"""  # noqa: E501


def _need(path: Path, layout: str) -> Path:
    if not path.exists():
        raise DataMissingError(f"missing {path}: {layout}")
    return path


def _duration(path: Path) -> tuple[float, int]:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError) as e:
        raise ClaspkitError(
            f"cannot read audio file {path} ({e}): the file is corrupt or in a format libsndfile cannot "
            "read; re-extract the corpus archive."
        ) from e
    return float(info.frames) / info.samplerate, int(info.samplerate)


def _rows_with_audio(records, source: str, layout: str, progress: bool) -> pd.DataFrame:
    from claspkit.progress import progress_bar

    missing = [r["path"] for r in records if not Path(r["path"]).is_file()]
    if missing:
        raise DataMissingError(
            f"{len(missing)} audio files named in the {source} tsv files are missing, e.g. {missing[0]}: "
            f"{layout}"
        )
    for r in progress_bar(records, desc=f"reading {source} audio", unit="file", disable=not progress):
        r["duration_s"], r["sample_rate"] = _duration(Path(r["path"]))
    return pd.DataFrame(records, columns=list(MANIFEST_COLUMNS))


def import_common_voice(folder, progress: bool = True) -> pd.DataFrame:
    """Manifest rows for a Common Voice language folder (train/dev/test tsv + clips/)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataMissingError(f"Common Voice folder {root} does not exist: {COMMON_VOICE_LAYOUT}")
    for name in SPLIT_FILES:
        _need(root / f"{name}.tsv", COMMON_VOICE_LAYOUT)
    clips = _need(root / "clips", COMMON_VOICE_LAYOUT)
    records, seen = [], set()
    for name, split in SPLIT_FILES.items():
        tsv = root / f"{name}.tsv"
        with open(tsv, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            lacking = {"path", "sentence"} - set(reader.fieldnames or [])
            if lacking:
                raise DataMissingError(f"{tsv} has no column(s) {sorted(lacking)}: {COMMON_VOICE_LAYOUT}")
            for row in reader:
                clip, text = (row.get("path") or "").strip(), (row.get("sentence") or "").strip()
                if not clip or not text or clip in seen:
                    continue
                seen.add(clip)
                audio = clips / clip
                if not audio.exists() and not Path(clip).suffix:  # early releases omit ".mp3"
                    audio = clips / f"{clip}.mp3"
                speaker = (row.get("client_id") or "").strip()
                records.append({
                    "id": f"cv-{Path(clip).stem}", "source": "common_voice", "text": text,
                    "category": "common_voice",
                    "voice": hashlib.sha1(speaker.encode()).hexdigest()[:12] if speaker else "",
                    "path": str(audio.resolve()), "split": split,
                })
    return _rows_with_audio(records, "Common Voice", COMMON_VOICE_LAYOUT, progress)


def import_fleurs(folder, progress: bool = True) -> pd.DataFrame:
    """Manifest rows for a FLEURS language folder (train/dev/test tsv + audio/<split>/)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataMissingError(f"FLEURS folder {root} does not exist: {FLEURS_LAYOUT}")
    for name in SPLIT_FILES:
        _need(root / f"{name}.tsv", FLEURS_LAYOUT)
        _need(root / "audio" / name, FLEURS_LAYOUT)
    records, seen = [], set()
    for name, split in SPLIT_FILES.items():
        tsv = root / f"{name}.tsv"
        with open(tsv, encoding="utf-8", newline="") as fh:
            for lineno, fields in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
                if not fields or not "".join(fields).strip():
                    continue
                if len(fields) < 3:
                    raise DataMissingError(f"{tsv}:{lineno} has {len(fields)} columns, expected at least 3: "
                                           f"{FLEURS_LAYOUT}")
                file_name, text = fields[1].strip(), fields[2].strip()
                if not text or (name, file_name) in seen:
                    continue
                seen.add((name, file_name))
                records.append({
                    "id": f"fleurs-{name}-{Path(file_name).stem}", "source": "fleurs", "text": text,
                    "category": "fleurs", "voice": "",
                    "path": str((root / "audio" / name / file_name).resolve()), "split": split,
                })
    return _rows_with_audio(records, "FLEURS", FLEURS_LAYOUT, progress)
