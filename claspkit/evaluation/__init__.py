"""Evaluation: retrieval metrics, the ASR cascade, multilingual and robustness studies, Table 2 and the figures.
"""
from claspkit.lazy import lazy_api

_API = {
    "full_gallery": "metrics",
    "candidates_protocol": "metrics",
    "retrieval_report": "metrics",
    "bootstrap_ci": "metrics",
    "cosine_matrix": "metrics",
    "wer": "asr",
    "transcribe_all": "asr",
    "cascade_embeddings": "asr",
    "measure_pipelines": "asr",
    "build_multilingual_queries": "multilingual",
    "synthesize_parallel_speech": "multilingual",
    "make_systems": "robustness",
    "evaluate": "robustness",
    "noise_sweep": "robustness",
    "cross_lingual": "robustness",
    "long_search": "robustness",
    "PAPER": "paper",
    "published_table2": "paper",
    "table2": "report",
    "write_table2": "report",
    "readme_results": "report",
    "write_stage": "results",
    "read_stage": "results",
    "read_all": "results",
    "use_style": "plots",
    "save_figure": "plots",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
