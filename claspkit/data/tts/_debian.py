"""TTS engines that ship as Debian packages, installed without apt, dpkg or root.

Each engine names the pinned bookworm ``.deb`` files it needs (file under the mirror, size, sha256, from the
archive's signed Packages index); ``claspkit.data.debdata`` downloads, verifies and unpacks them under
``data/raw/debian`` on first use (or ``python -m claspkit.fetch --voices``), and a copy placed there by hand is
used first. Programs run with ``LD_LIBRARY_PATH`` on the unpacked library folders; libraries load through
ctypes by absolute path. The package versions and sha256 are the engine's build, part of every cache key,
so audio of two builds is never mixed. An engine is only installed when a voice of it is checked or spoken:
listing voices and computing content addresses need nothing downloaded.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import NamedTuple

from claspkit.data.tts._base import Synthesizer
from claspkit.errors import AudioError, ClaspkitError, ToolMissingError

__all__ = ["PINS", "PULSE_RUNTIME", "DebVoice", "DebianEngine", "install", "package_version", "download_bytes",
           "build_id", "lib_dirs", "read_wav"]

# package -> (file under the mirror, size in bytes, sha256): Debian 12 (bookworm) main, contrib and non-free.
PINS: dict[str, tuple[str, int, str]] = {
    "libpulse0": ("pool/main/p/pulseaudio/libpulse0_16.1+dfsg1-2+b1_amd64.deb", 273952,
                  "7b2c5403cb726312219aad678becc6d6adcee1d8694fdffce0b6ec15ae010831"),
    "libsndfile1": ("pool/main/libs/libsndfile/libsndfile1_1.2.0-1+deb12u1_amd64.deb", 196540,
                    "02dc3f08fe8476e82e005f412e3b7289ff641180f33a9be8073f4bde61c85e8e"),
    "libasyncns0": ("pool/main/liba/libasyncns/libasyncns0_0.8-6+b3_amd64.deb", 12920,
                    "cadaff99f4178b1f580331045621b363abaaefc994e78eecba1857774a3cead2"),
    "libflac12": ("pool/main/f/flac/libflac12_1.4.2+ds-2_amd64.deb", 198124,
                  "4d8431c274eef13ec9ee2c0bf988c34b4342367dec053b7f69a432525be5b1fe"),
    "libmp3lame0": ("pool/main/l/lame/libmp3lame0_3.100-6_amd64.deb", 364932,
                    "b1292c749172e7623547ecf684da57d3ec6ca22109f08b11bbb9e6be6e6beb95"),
    "libmpg123-0": ("pool/main/m/mpg123/libmpg123-0_1.31.2-1+deb12u1_amd64.deb", 146980,
                    "a10ad0d59995b859797a5f20d2833672051d0b2c7dab4c71f2e79258b2e3f631"),
    "libogg0": ("pool/main/libo/libogg/libogg0_1.3.5-3_amd64.deb", 23412,
                "f67acb0477aed0354f411172e37af338f3ac6bd4f3766134a2cf5539884b5a28"),
    "libopus0": ("pool/main/o/opus/libopus0_1.3.1-3_amd64.deb", 195192,
                 "c172e212f9039e741916aa8e12f3670d1e049dc0c16685325641288c2d83faa7"),
    "libvorbis0a": ("pool/main/libv/libvorbis/libvorbis0a_1.3.7-1_amd64.deb", 93028,
                    "01c14f9d1109650077a4c5c337c285476a6932d4d448f5a190c2b845724dbf21"),
    "libvorbisenc2": ("pool/main/libv/libvorbis/libvorbisenc2_1.3.7-1_amd64.deb", 80568,
                      "75dd4d6f904c7db82f5112e60d8efea9e81dfedf94e970c5da7af2b3d81643c0"),
    "libsonic0": ("pool/main/s/sonic/libsonic0_0.2.0-12_amd64.deb", 11024,
                  "9d60de6918ace0b10e3e4e95421befd08aaf03b5b2a3d71ceb799e0cf259916f"),
    "flite": ("pool/main/f/flite/flite_2.2-5_amd64.deb", 252784,
              "f4ce03470bf9974c2cb9cacd981e6be29339ef4c97cf994dd6fa3f90e6544db9"),
    "libflite1": ("pool/main/f/flite/libflite1_2.2-5_amd64.deb", 12823776,
                  "bfa8c591f1b47730b30b372ec38e02918a1c9795eada67684e1746390ad2f061"),
    "festival": ("pool/main/f/festival/festival_2.5.0-9_amd64.deb", 642616,
                 "d635d3aebabb5e4bf4d2f1f1bb65a0de4ca1b4ffd8e52bd473b17d3e235e88a7"),
    "libestools2.5": ("pool/main/s/speech-tools/libestools2.5_2.5.0-13_amd64.deb", 1004748,
                      "c5d7a7ea3f17c5779b7f47b40ba622d5f6a22242b05a20f746e05f0b07a883fb"),
    "festlex-cmu": ("pool/main/f/festlex-cmu/festlex-cmu_2.4-2_all.deb", 895000,
                    "9c4ca30881e987998abd51bed538e08d960aa08e8f003461c8c246da97235bbb"),
    "festlex-poslex": ("pool/main/f/festlex-poslex/festlex-poslex_2.4-1_all.deb", 185664,
                       "bb0b51d8f99ee829ce43f4aa0983d5b63d50225dcbdd24a9b14d18e24fddc684"),
    "festlex-oald": ("pool/non-free/f/festlex-oald/festlex-oald_2.4-3_all.deb", 1137888,
                     "88998f73e43632245ded075c2da4a1b10cdde68f649b6ccbf52483775635c36f"),
    "festlex-ifd": ("pool/main/f/festival-it/festlex-ifd_2.0+debian0-6_all.deb", 2367952,
                    "8f98f36c50fab70ee073d1e07d8e7444f003712d5d5222f6d83516e825f36d7a"),
    "festvox-us-slt-hts": ("pool/main/f/festvox-us-slt-hts/festvox-us-slt-hts_0.2010.10.25-4_all.deb", 993972,
                           "b9ac83795572e717c4595d7dac428336490eeba6801f6e607009a305b4b7da58"),
    "festvox-kallpc16k": ("pool/main/f/festvox-kallpc16k/festvox-kallpc16k_2.4-1_all.deb", 3614252,
                          "bb21a90974a2754044c6dc11e4cf958aa8ba91ddb312e20ea7a114f3b73dadae"),
    "festvox-kdlpc16k": ("pool/main/f/festvox-kdlpc16k/festvox-kdlpc16k_1.4.0-6.1_all.deb", 3796928,
                         "3c359e51b6c85d5f5e00368804c52a68f551b1961ee03a79dde5245bc1accb6c"),
    "festvox-don": ("pool/contrib/f/festvox-don/festvox-don_1.4.0-5_all.deb", 605740,
                    "bfb9e9ba2171fb522f573e176e8ce37660c3c1d4296d7364d902fbc860dc5d7f"),
    "festvox-rablpc16k": ("pool/contrib/f/festvox-rablpc16k/festvox-rablpc16k_2.4-1_all.deb", 4754060,
                          "d2ed662717a9eb346fdf087d5d6816dce39755cd3a0b396608a67b56e78c8ca6"),
    "festvox-ellpc11k": ("pool/non-free/f/festvox-ellpc11k/festvox-ellpc11k_1.95-1_all.deb", 1304056,
                         "d8a442cc4ff9fb8103d0fc2b6328b7493a94817972aca45fef29f3bc79fec4ae"),
    "festvox-italp16k": ("pool/main/f/festival-it/festvox-italp16k_2.0+debian0-6_all.deb", 4203204,
                         "4acbcabf7e81cf284e1f7db9135d7761e44c6bb3f9dda85727291fe95942f525"),
    "festvox-itapc16k": ("pool/main/f/festival-it/festvox-itapc16k_2.0+debian0-6_all.deb", 3544552,
                         "832c8c4cede93ef292132f8a7b5d6cddaad0046e348517d8445b4a4a906f09e6"),
    "librhvoice5": ("pool/non-free/r/rhvoice/librhvoice5_1.8.0+dfsg-3_amd64.deb", 91844,
                    "7a12f124a48941ec0e94aeaa60da44a27c164a31d5a6bb884875e533a6d15128"),
    "librhvoice-core7": ("pool/non-free/r/rhvoice/librhvoice-core7_1.8.0+dfsg-3_amd64.deb", 511400,
                         "7b321d21caf899c78e579593f105fd49995f4d0c948c0523b2b4baa3291375f5"),
    "rhvoice-english": ("pool/non-free/r/rhvoice/rhvoice-english_1.8.0+dfsg-3_all.deb", 34095160,
                        "7ea5227bcfc54b814086f53225ff47052b444d4554e8c4e752c9e6b29edf89a5"),
    "rhvoice-russian": ("pool/non-free/r/rhvoice/rhvoice-russian_1.8.0+dfsg-3_all.deb", 106057580,
                        "1892955b9d779abb67963842f124fb2192810e7bb9976ad3a4cbdea7a99ac838"),
    "libttspico0": ("pool/non-free/s/svox/libttspico0_1.0+git20130326-13_amd64.deb", 141348,
                    "fc9e4dbc664a7756ae73e83633d9987e6b0f2fd5248f04def8beb8de6df2cd02"),
    "libttspico-data": ("pool/non-free/s/svox/libttspico-data_1.0+git20130326-13_all.deb", 4155536,
                        "25c9904cef2471302634c03deff3ca96b588e22ea94929dda72d940584a3b84a"),
    "espeak-ng": ("pool/main/e/espeak-ng/espeak-ng_1.51+dfsg-10+deb12u2_amd64.deb", 352900,
                  "a11396a690f85f55e6e6b2965505237ddf3dc95c51936aa61de936f1ccf8f4d0"),
    "libespeak-ng1": ("pool/main/e/espeak-ng/libespeak-ng1_1.51+dfsg-10+deb12u2_amd64.deb", 200132,
                      "2b127a95b50d92cbd7a615968d2ac1566e1cbc87e27bcda0c2894afb2407c6d2"),
    "espeak-ng-data": ("pool/main/e/espeak-ng/espeak-ng-data_1.51+dfsg-10+deb12u2_amd64.deb", 4255896,
                       "573f5661c6a5adcf949018baad158c4c773bf5579390ee5235a890f1cd694106"),
    "libpcaudio0": ("pool/main/p/pcaudiolib/libpcaudio0_1.2-2_amd64.deb", 8800,
                    "5309759e4d129c7d9a601240cc6e62820ecfa86a1a98e207992ffa6a572dbcd2"),
    "mbrola": ("pool/contrib/m/mbrola/mbrola_3.3+dfsg-9_amd64.deb", 165736,
               "d94ea5bbb8b201935e8a40d758f1a224030d13a1ba669cc75293823933554c7f"),
    "mbrola-us1": ("pool/non-free/m/mbrola-us1/mbrola-us1_0.3+repack2-5_all.deb", 6042520,
                   "b3284caecfc47023bca46550c5f7cde2f4e8cb4ac3b60840ff8784914c7c85fd"),
    "mbrola-us2": ("pool/non-free/m/mbrola-us2/mbrola-us2_0.1+repack2-5_all.deb", 5900796,
                   "ea95d89157e420b119f078853ddf27383b4cb4c607581c64b0f9079d5ee3f5dc"),
    "mbrola-us3": ("pool/non-free/m/mbrola-us3/mbrola-us3_0.1+repack2-4_all.deb", 5476324,
                   "f8a4e75acc914a58fb7c85ffc3bbea48f0dc2c13704fadd054101020e973c1c2"),
    "mbrola-en1": ("pool/non-free/m/mbrola-en1/mbrola-en1_19980910+repack2-5_all.deb", 5126048,
                   "1a94a61d15f1e6748563d2f15d12614b71df7c7e25370f433320e011fd1f5f63"),
    "mbrola-fr1": ("pool/non-free/m/mbrola-fr1/mbrola-fr1_2.050+repack2-4_all.deb", 4394940,
                   "3b3fc10f27c2b202b188492f17d1929a2a3dc9ddecbcb08120610bc68e352202"),
    "mbrola-fr4": ("pool/non-free/m/mbrola-fr4/mbrola-fr4_0.0.19990521+repack2-5_all.deb", 5314464,
                   "3c19935aa7a6c897c7c033a0c964344b64ff3076b431d2544706a3d4574e1a0f"),
    "mbrola-es2": ("pool/non-free/m/mbrola-es2/mbrola-es2_2.069+repack2-4_all.deb", 4530604,
                   "e07f45d2aaef05ec08e4cb176ee24133223567704bf6f9762ea797f598099ee6"),
    "mbrola-it3": ("pool/non-free/m/mbrola-it3/mbrola-it3_0.1+repack2-5_all.deb", 4889396,
                   "e8eea0391a78f98a5f37e1e1fa9a68547ec85b4ecd701e34090f76017fba2789"),
    "mbrola-de2": ("pool/non-free/m/mbrola-de2/mbrola-de2_0.0.19990106+repack2-4_all.deb", 8462036,
                   "d229fd4d1d9cac89a838c0b1761c615bd3bc8d46a7d9709a69e68f35f3ede0fe"),
}
# festival's libestools and espeak-ng's libpcaudio link libpulse; it and what it loads are not on every machine.
PULSE_RUNTIME = ("libpulse0", "libsndfile1", "libasyncns0", "libflac12", "libmp3lame0", "libmpg123-0", "libogg0",
                 "libopus0", "libvorbis0a", "libvorbisenc2")
LIB_SUBDIR = "usr/lib/x86_64-linux-gnu"
SUBPROCESS_TIMEOUT_S = 120


class DebVoice(NamedTuple):
    """One voice of a Debian-packaged engine: its language, the engine's own name for it, extra packages."""
    lang: str
    native: str
    packages: tuple = ()


def package_version(package: str) -> str:
    """The Debian version in the pinned file name (``name_version_arch.deb``)."""
    return Path(PINS[package][0]).stem.split("_")[1]


def download_bytes(packages) -> int:
    return sum(PINS[p][1] for p in dict.fromkeys(packages))


def build_id(packages) -> str:
    """Versions and sha256 prefixes of ``packages``: what an engine's audio depends on."""
    return " ".join(f"{p}={package_version(p)}:{PINS[p][2][:12]}" for p in packages)


def install(packages) -> dict[str, Path]:
    """Fetch, verify and unpack each pinned package (reusing complete unpacks): package -> its folder."""
    from claspkit.data.debdata import fetch_deb

    return {p: fetch_deb(p, pin=PINS[p], programs=True) for p in packages}


def lib_dirs(roots) -> list[str]:
    """Every folder under the packages' library folders that holds a shared library."""
    out = []
    for root in roots:
        base = Path(root) / LIB_SUBDIR
        if base.is_dir():
            out += sorted({str(f.parent) for f in base.rglob("*.so*")})
    return out


class DebianEngine(Synthesizer):
    """An engine made of pinned Debian packages: ``PACKAGES`` always, ``VOICES[v].packages`` per voice.

    ``REQUIRED`` lists (package, path) pairs that must exist once installed; a damaged install fails with
    the folder to delete instead of an obscure loader error.
    """

    PACKAGES: tuple = ()
    VOICES: dict[str, DebVoice] = {}
    REQUIRED: tuple = ()
    LICENSE = ""

    def __init__(self):
        self._roots: dict[str, Path] = {}

    @property
    def version(self) -> str:
        return f"{self.name} (Debian {build_id(self.PACKAGES)})"

    def cache_tag(self, vs):
        extra = self.VOICES[vs.voice].packages if vs.voice in self.VOICES else ()
        return self.version + (f" + {build_id(extra)}" if extra else "")

    def voices(self) -> list[str]:
        return list(self.VOICES)

    def all_packages(self) -> list[str]:
        return list(dict.fromkeys([*self.PACKAGES, *(p for v in self.VOICES.values() for p in v.packages)]))

    def check(self, vs) -> None:
        """Validate the voice, then install what it needs (once per process)."""
        super().check(vs)
        self.ready(vs.voice)

    def ready(self, voice: str | None = None) -> dict[str, Path]:
        """The unpacked folders of the engine's packages (and ``voice``'s), installing them on first use."""
        want = [p for p in (*self.PACKAGES, *(self.VOICES[voice].packages if voice else ())) if p not in self._roots]
        if want:
            try:
                got = install(want)
            except ClaspkitError as e:
                raise ToolMissingError(
                    f"the {self.name} TTS engine could not be installed ({e}). Its pinned Debian packages "
                    f"({', '.join(want)}) are downloaded on first use; run `python -m claspkit.fetch --voices` "
                    "where the Debian mirror is reachable, or place the .deb files as said above.") from e
            for package, rel in self.REQUIRED:
                if package in got and not (got[package] / rel).exists():
                    raise ToolMissingError(
                        f"the {self.name} engine's install is damaged: {got[package] / rel} is missing. Delete "
                        f"{got[package]} and run again: the pinned package {package} is unpacked afresh.")
            self._roots.update(got)
        return self._roots

    def env(self) -> dict:
        """The environment of the engine's programs: its libraries first, an empty HOME (no user config)."""
        roots = self.ready()
        home = next(iter(roots.values())).parent / ".claspkit-empty-home"
        home.mkdir(exist_ok=True)
        libs = lib_dirs(roots.values())
        bins = [str(r / "usr/bin") for r in roots.values() if (r / "usr/bin").is_dir()]
        return {**os.environ, "HOME": str(home), "LD_LIBRARY_PATH": os.pathsep.join(libs),
                "PATH": os.pathsep.join([*bins, os.environ.get("PATH", "")]), "LC_ALL": "C.UTF-8"}

    def run(self, args, vs, **kw) -> subprocess.CompletedProcess:
        """Run one of the engine's programs; AudioError with its stderr when it fails."""
        try:
            proc = subprocess.run(args, capture_output=True, timeout=SUBPROCESS_TIMEOUT_S, env=self.env(), **kw)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise AudioError(f"{self.name} failed for voice {vs.spec!r}: {e}") from e
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()[-500:]
            raise AudioError(f"{self.name} failed for voice {vs.spec!r} (exit {proc.returncode}): {err}")
        return proc


def read_wav(path) -> tuple:
    """(int16 samples, sample rate) of a PCM wav an engine wrote."""
    import soundfile as sf

    try:
        audio, sr = sf.read(str(path), dtype="int16")
    except (RuntimeError, OSError) as e:
        raise AudioError(f"the engine wrote no readable wav ({e})") from e
    return audio, sr
