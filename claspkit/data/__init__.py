"""Data: the Brown corpus, UDHR and Asterisk prompts, Speech Brown synthesis, manifests and splits, audio I/O,
and training augmentation (``augment``: simulated recording channels, frame masking).

Notebook 01 builds the corpus with these.
"""
from claspkit.lazy import lazy_api

_API = {
    "load_brown": "brown",
    "clean": "brown",
    "category_histogram": "brown",
    "build_corpus": "corpus",
    "load_manifest": "corpus",
    "audio_path": "corpus",
    "corpus_summary": "corpus",
    "category_counts": "corpus",
    "load_udhr": "udhr",
    "parallel_articles": "udhr",
    "load_asterisk": "asterisk",
    "sentence_prompts": "asterisk",
    "parallel_prompts": "asterisk",
    "import_common_voice": "importers",
    "import_fleurs": "importers",
    "MANIFEST_COLUMNS": "manifest",
    "ManifestError": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "validate_manifest": "manifest",
    "SPLITS": "splits",
    "stratified_split": "splits",
    "straddling_twins": "splits",
    "spoken_form": "spoken",
    "get_synthesizer": "tts",
    "list_voices": "tts",
    "check_voice": "tts",
    "synthesize_corpus": "tts",
    "load_audio": "audio",
    "resample": "audio",
    "fetch_npm_package": "npmdata",
    "fetch_deb": "debdata",
    "augmented_copies": "augment",
    "channel_copies": "augment",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
