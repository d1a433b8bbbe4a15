"""claspkit.data.debdata (pure-Python .deb fetch/unpack) and claspkit.data.asterisk (the Asterisk prompt importer).

Every test but the slow one builds its own .deb packages: an ar archive holding a data.tar.xz with
G.722 tones encoded by PyAV, and the base package's gzipped ``name: text`` transcript.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import tarfile
import warnings

import numpy as np
import pytest
import soundfile as sf

from claspkit.data import asterisk, debdata
from claspkit.data.asterisk import (COLUMNS, UnmatchedPromptWarning, load_asterisk, norm_text, parallel_prompts,
                               sentence_prompts)
from claspkit.data.archives import MARKER
from claspkit.data.debdata import fetch_deb, unpacked_dir
from claspkit.errors import ChecksumError, ClaspkitError, DataMissingError, ParamError
from claspkit.data.manifest import validate_manifest

CLOSED_MIRROR = "http://127.0.0.1:9/"  # the discard port: connection refused at once
POOL = "pool/main/a/asterisk-core-sounds/"

EN_TRANSCRIPT = """; Core Asterisk Sounds in English

activated: Activated.
agent-pass: Please enter your password followed by the pound key.
auth-incorrect: Password incorrect.  Please enter your password followed by the pound key.
beep: [this is a simple beep tone]
digits/1: one
digits/1: uno
dir-welcome:
invalid: I'm sorry, that's not a valid extension. Please try again.
is: is
letters/A: A
pbx-invalid: I'm sorry,  that's NOT a valid extension.  Please try again!
pls-try-call-later: Please try your call later.
vm-intro: Please leave your message after the tone. (simple tone sound plays)
"""
# prompt -> seconds of tone (0 = an empty file); dir-welcome has a blank transcript, tt-weasels none.
EN_AUDIO = {"activated": 0.5, "agent-pass": 1.25, "auth-incorrect": 1.5, "beep": 0.25, "digits/1": 0.5,
            "dir-welcome": 0.5, "invalid": 1.0, "is": 0, "letters/a": 0.25, "pbx-invalid": 1.0,
            "vm-intro": 2.0, "tt-weasels": 0.75}
FR_TRANSCRIPT = """; Core Asterisk Sounds in French
activated: activé
agent-pass: Composez votre mot de passe suivi du dièse.
invalid: Désolé, ce n'est pas un poste valide. Veuillez réessayer.
vm-intro: Laissez votre message après le bip.
"""
FR_AUDIO = {"activated": 0.5, "agent-pass": 1.0, "invalid": 1.0, "vm-intro": 1.0}
FOLDERS = {"en": "en_US_f_Allison", "fr": "fr_CA_f_June"}


@functools.lru_cache(maxsize=None)
def g722(seconds: float, freq: float = 440.0) -> bytes:
    """A sine tone encoded as raw G.722 by PyAV's FFmpeg (8 bits per 2 samples at 16 kHz)."""
    import av

    if seconds == 0:
        return b""
    t = np.arange(int(round(seconds * 16000))) / 16000
    x = (0.5 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)[None, :]
    buf = io.BytesIO()
    with av.open(buf, "w", format="g722") as out:
        stream = out.add_stream("g722", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(x, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def tar_xz(files: dict[str, bytes]) -> bytes:
    """A data.tar.xz laid out like dpkg's: ``./`` names, folders before their files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        safe = [n for n in files if not n.startswith(("..", "/"))]
        for d in sorted({"/".join(n.split("/")[:i]) for n in safe for i in range(1, n.count("/") + 1)}):
            info = tarfile.TarInfo(f"./{d}/")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name if name.startswith(("..", "/")) else f"./{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ar(members: dict[str, bytes]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def deb(files: dict[str, bytes], data_name: str = "data.tar.xz") -> bytes:
    return ar({"debian-binary": b"2.0\n", "control.tar.xz": tar_xz({"control": b"Package: x\n"}),
               data_name: tar_xz(files)})


def pin(monkeypatch, package: str, data: bytes) -> str:
    """Pin ``package`` to a fixture .deb; returns the file name it is served under."""
    name = f"{package}_9.9-1_all.deb"
    monkeypatch.setitem(debdata.PINNED, package, (POOL + name, len(data), hashlib.sha256(data).hexdigest()))
    return name


def language_debs(lang: str, transcript: str, audio: dict[str, float]) -> dict[str, bytes]:
    base = {f"usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz": gzip.compress(transcript.encode()),
            f"usr/share/doc/asterisk-core-sounds-{lang}/copyright": b"CC-BY-SA-3.0\n"}
    sounds = {f"usr/share/asterisk/sounds/{FOLDERS[lang]}/{p}.g722": g722(s) for p, s in audio.items()}
    return {f"asterisk-core-sounds-{lang}": deb(base), f"asterisk-core-sounds-{lang}-g722": deb(sounds)}


@pytest.fixture
def mirror(tmp_path, monkeypatch, isolated_data):
    """A loopback HTTP server laid out like a Debian mirror, serving fixture en + fr packages."""
    import http.server
    import threading

    root = tmp_path / "mirror"
    (root / POOL).mkdir(parents=True)
    debs = {**language_debs("en", EN_TRANSCRIPT, EN_AUDIO), **language_debs("fr", FR_TRANSCRIPT, FR_AUDIO)}
    for package, data in debs.items():
        (root / POOL / pin(monkeypatch, package, data)).write_bytes(data)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("CLASPKIT_DEBIAN_MIRROR", f"http://127.0.0.1:{server.server_address[1]}")
    yield {"root": root, "debs": debs}
    server.shutdown()


@pytest.fixture
def closed(monkeypatch, isolated_data):
    monkeypatch.setenv("CLASPKIT_DEBIAN_MIRROR", CLOSED_MIRROR)
    return isolated_data / "raw" / "debian"


def place(monkeypatch, folder, package, data) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / pin(monkeypatch, package, data)).write_bytes(data)


# ---------------------------------------------------------------- debdata


def test_hand_placed_deb_is_unpacked_privately_and_reused(closed, monkeypatch):
    place(monkeypatch, closed, "asterisk-core-sounds-en", deb({"usr/share/doc/x/a.txt": b"hello\n"}))
    out = fetch_deb("asterisk-core-sounds-en")
    assert out == unpacked_dir("asterisk-core-sounds-en") and out.parent == closed
    assert (out / "usr/share/doc/x/a.txt").read_text() == "hello\n"
    assert (out / MARKER).read_text().strip() == debdata.PINNED["asterisk-core-sounds-en"][2]
    assert not (out / "usr/share/doc/x/a.txt").stat().st_mode & 0o022
    assert sorted(p.name for p in closed.iterdir()) == sorted([out.name, out.name + ".deb"])  # no temp folders
    (closed / (out.name + ".deb")).unlink()
    assert fetch_deb("asterisk-core-sounds-en") == out  # reused: no file and no network needed


def test_download_from_mirror_env(mirror):
    out = fetch_deb("asterisk-core-sounds-fr")
    assert (out / "usr/share/doc/asterisk-core-sounds-fr/core-sounds-fr.txt.gz").is_file()
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # the downloaded .deb is not kept


def test_checksum_mismatch_unpacks_nothing(closed, monkeypatch):
    place(monkeypatch, closed, "asterisk-core-sounds-en", deb({"usr/a": b"x"}))
    file, size, _ = debdata.PINNED["asterisk-core-sounds-en"]
    monkeypatch.setitem(debdata.PINNED, "asterisk-core-sounds-en", (file, size, "0" * 64))
    with pytest.raises(ChecksumError, match="does not match the pinned") as e:
        fetch_deb("asterisk-core-sounds-en")
    msg = str(e.value)
    assert "Nothing was unpacked" in msg and "data/raw/debian/asterisk-core-sounds-en_9.9-1_all.deb" in msg
    assert [p.name for p in closed.iterdir()] == [file.rsplit("/", 1)[1]]


@pytest.mark.parametrize("bad", ["../evil", "/tmp/claspkit-test-evil-abs"])
def test_unsafe_member_is_refused(closed, monkeypatch, bad):
    place(monkeypatch, closed, "asterisk-core-sounds-en", deb({"usr/ok": b"x", bad: b"y"}))
    with pytest.raises(ChecksumError, match="unsafe member"):
        fetch_deb("asterisk-core-sounds-en")
    assert not (closed.parent / "evil").exists() and not os.path.exists("/tmp/claspkit-test-evil-abs")
    assert [p.suffix for p in closed.iterdir()] == [".deb"]  # nothing unpacked, no temp folder left


def test_killed_unpack_folder_is_replaced(closed, monkeypatch):
    place(monkeypatch, closed, "asterisk-core-sounds-en", deb({"usr/a.txt": b"good"}))
    stale = unpacked_dir("asterisk-core-sounds-en")
    (stale / "usr").mkdir(parents=True)
    (stale / "usr/a.txt").write_text("half")  # no marker: a killed unpack, never trusted
    out = fetch_deb("asterisk-core-sounds-en")
    assert (out / "usr/a.txt").read_text() == "good" and (out / MARKER).is_file()


@pytest.mark.parametrize("data, match", [
    (b"!<arch>\ndebian-binary   0", "not a valid .deb"),
    (b"PK\x03\x04 a zip file", "not a valid .deb"),
    (ar({"debian-binary": b"2.0\n", "data.tar.xz": b"\xfd7zXZ\x00 truncated"}), "is corrupt"),
    (ar({"debian-binary": b"2.0\n", "data.tar.zst": b"(\xb5/\xfd"}), "data.tar.zst, which claspkit cannot unpack"),
])
def test_corrupt_or_unsupported_archive_names_url_and_path(closed, monkeypatch, data, match):
    place(monkeypatch, closed, "asterisk-core-sounds-en", data)
    with pytest.raises(ClaspkitError, match=match) as e:
        fetch_deb("asterisk-core-sounds-en")
    msg = str(e.value)
    assert "data/raw/debian/asterisk-core-sounds-en_9.9-1_all.deb" in msg
    assert CLOSED_MIRROR + POOL + "asterisk-core-sounds-en_9.9-1_all.deb" in msg and "CLASPKIT_DEBIAN_MIRROR" in msg
    assert [p.suffix for p in closed.iterdir()] == [".deb"]


def test_no_network_says_every_fix(closed):
    with pytest.raises(DataMissingError) as e:
        fetch_deb("asterisk-core-sounds-en")
    msg = str(e.value)
    assert CLOSED_MIRROR + POOL + "asterisk-core-sounds-en_1.6.1-1_all.deb" in msg
    assert "CLASPKIT_DEBIAN_MIRROR" in msg and "data/raw/debian/asterisk-core-sounds-en_1.6.1-1_all.deb" in msg
    assert "sha256 973e797d" in msg and "no apt-get" in msg.lower()
    with pytest.raises(ParamError, match="asterisk-core-sounds-en"):
        fetch_deb("asterisk-core-sounds-xx")


# ---------------------------------------------------------------- the importer


def test_load_asterisk_columns_flags_and_report(mirror):
    with pytest.warns(UnmatchedPromptWarning, match="1 transcript without audio") as w:
        df = load_asterisk("en", progress=False)
    assert "2 audio without transcript" in str(w[0].message) and "1 empty audio" in str(w[0].message)
    assert tuple(df.columns) == COLUMNS
    validate_manifest(df)  # usable wherever a manifest is
    rows = df.set_index("prompt")
    assert list(rows.index) == ["activated", "agent-pass", "auth-incorrect", "beep", "digits/1", "invalid",
                                "letters/a", "pbx-invalid", "vm-intro"]
    assert rows.loc["digits/1", "id"] == "asterisk-en-digits/1" and rows.loc["digits/1", "text"] == "one"
    assert rows.loc["beep", "annotated"] and rows.loc["beep", "text"] == "" and rows.loc["beep", "n_words"] == 0
    vm = rows.loc["vm-intro"]
    assert vm["annotated"] and vm["text"] == "Please leave your message after the tone."
    assert vm["raw_text"].endswith("(simple tone sound plays)") and vm["n_words"] == 7 and not vm["short"]
    assert rows.loc["activated", "short"] and not rows.loc["activated", "annotated"]
    assert rows.loc["letters/a", "text"] == "A"  # transcript `letters/A`, file `letters/a`
    assert set(df["lang"]) == {"en"} and set(df["speaker"]) == {"Allison Smith"} and set(df["gender"]) == {"female"}
    assert set(df["license"]) == {"CC-BY-SA-3.0"} and set(df["split"]) == {"test"}
    report = df.attrs["asterisk_report"]
    assert report["transcript_without_audio"] == ["pls-try-call-later"]
    assert report["audio_without_transcript"] == ["dir-welcome", "tt-weasels"]
    assert report["blank_transcript"] == ["dir-welcome"] and report["empty_audio"] == ["is"]
    assert report["duplicate_names"] == ["digits/1: uno"]
    assert report["matched_ignoring_case"] == ["letters/A -> letters/a"]
    assert report["matched"] == len(df) == 9


def test_decoded_wav_is_16k_mono_with_the_right_duration_and_cached(mirror, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmatchedPromptWarning)
        df = load_asterisk("en", progress=False).set_index("prompt")
        for prompt, seconds in EN_AUDIO.items():
            if prompt not in df.index:
                continue
            info = sf.info(df.loc[prompt, "path"])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert df.loc[prompt, "duration"] == pytest.approx(seconds, abs=1e-3) == info.frames / 16000
        x, _ = sf.read(df.loc["vm-intro", "path"])
        spectrum = np.abs(np.fft.rfft(x))
        assert np.argmax(spectrum) * 16000 / len(x) == pytest.approx(440, abs=2)  # the tone survives G.722
        assert "/audio/asterisk/en-" in df.loc["vm-intro", "path"]
        monkeypatch.setattr(asterisk, "decode_g722", lambda *a: pytest.fail("decoded twice"))
        again = load_asterisk("en", progress=False)
    assert list(again["duration"]) == list(df["duration"])


def test_sentence_prompts_dedup_by_normalised_text(mirror):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmatchedPromptWarning)
        df = load_asterisk("en", progress=False)
    s = sentence_prompts(df)
    # vm-intro is annotated; pbx-invalid differs from invalid only in case, spacing and punctuation
    assert list(s["prompt"]) == ["agent-pass", "auth-incorrect", "invalid"]
    assert norm_text("I'm sorry,  that's NOT a valid extension.  Please try again!") == s["norm_text"].iloc[2]
    assert list(sentence_prompts(df, min_words=10)["prompt"]) == ["auth-incorrect", "invalid"]


def test_parallel_prompts_align_by_name(mirror):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmatchedPromptWarning)
        p = parallel_prompts(["fr", "en"], progress=False)
        q = parallel_prompts(["en", "fr"], min_words=4, progress=False)
    assert list(p["prompt"]) == ["activated"] * 2 + ["agent-pass"] * 2 + ["invalid"] * 2 + ["vm-intro"] * 2
    assert list(p["lang"]) == ["fr", "en"] * 4
    assert list(q[q.lang == "fr"]["prompt"]) == list(q[q.lang == "en"]["prompt"]) == ["agent-pass", "invalid"]
    assert q.pivot(index="prompt", columns="lang", values="text").loc["invalid", "fr"].startswith("Désolé")
    with pytest.raises(ParamError, match="distinct"):
        parallel_prompts(["en", "en"])
    with pytest.raises(ParamError, match="'de' is not one of"):
        load_asterisk("de")


# ---------------------------------------------------------------- the real packages


@pytest.mark.slow
def test_real_english_prompts(isolated_data, monkeypatch):
    """The pinned Debian packages straight from deb.debian.org (about 11 MB), decoded with PyAV."""
    monkeypatch.delenv("CLASPKIT_DEBIAN_MIRROR", raising=False)
    try:
        fetch_deb("asterisk-core-sounds-en")
    except DataMissingError as e:
        pytest.skip(f"deb.debian.org is not reachable from here: {e}")
    with pytest.warns(UnmatchedPromptWarning, match="pls-try-call-later"):
        df = load_asterisk("en", progress=False)
    # measured: 569 transcript lines, 568 audio files, 568 prompts; 242 with 4+ words, 219 distinct sentences
    assert 540 <= len(df) <= 600 and df.attrs["asterisk_report"]["audio_files"] == 568
    assert 230 <= int((df["n_words"] >= 4).sum()) <= 250
    s = sentence_prompts(df)
    assert 200 <= len(s) <= 240 and not s["annotated"].any() and s["norm_text"].is_unique
    assert 24 <= df["duration"].sum() / 60 <= 27  # 25.5 minutes
    info = sf.info(df.set_index("prompt").loc["vm-intro", "path"])
    assert (info.samplerate, info.channels) == (16000, 1)
