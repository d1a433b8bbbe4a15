"""The ``claspkit`` command: index a folder of recordings, search it with text, list backbones and knobs.

    claspkit index AUDIO_DIR [--model CHECKPOINT] --out INDEX [--transcribe [ASR]] [--rebuild] [--engine ray] [--json]
    claspkit search INDEX "query text" [--lang fr] [-k 10] [--rank clasp|transcript|hybrid] [--json]
    claspkit embed AUDIO_DIR [--model CHECKPOINT] --out vectors.parquet [--segment] [--json]
    claspkit adapt AUDIO [--model CHECKPOINT] --out NEW [--asr whisper-base] [--language en] [--force] [--json]
    claspkit backbones [--role speech|image|text|asr]
    claspkit params

Exit codes: 0 success, 2 a usage error or a claspkit error (one line on stderr, no traceback: every
claspkit error already says what to do), 130 interrupted (the previous index is intact; re-run to
resume). Heavy imports happen inside the subcommands so ``claspkit --help`` stays instant.
"""
from __future__ import annotations

import argparse
import json
import sys

from claspkit import __version__
from claspkit.config import ENGINES, IMAGE_RUNTIMES, SCHEMA
from claspkit.errors import ClaspkitError

RANKS = ("clasp", "transcript", "hybrid")      # claspkit.search.rank.RANKS, without importing numpy for --help

__all__ = ["fmt_time", "hits_table", "build_parser", "main"]


def fmt_time(seconds: float) -> str:
    """mm:ss.s, or h:mm:ss.s from an hour on."""
    tenths = int(round(float(seconds) * 10))
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    s = f"{m:02d}:{rest // 10:02d}.{rest % 10}"
    return f"{h}:{s}" if h else s


def hits_table(hits) -> str:
    """One line per hit; a transcribed hit's transcript on the line below it."""
    rows = [("rank", "score", "time", "file")]
    rows += [(str(i), f"{h.score:.3f}", f"{fmt_time(h.start_s)}-{fmt_time(h.end_s)}", h.file)
             for i, h in enumerate(hits, 1)]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    lines = [f"{r[0]:>{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
    out = lines[:1]
    for line, h in zip(lines[1:], hits):
        out.append(line)
        transcript = getattr(h, "transcript", None)
        if transcript is not None:
            out.append(" " * (widths[0] + 2) + f'"{transcript["text"]}"')
    return "\n".join(out)


def _cmd_index(args) -> int:
    from claspkit.search.query import build_index

    summary = build_index(args.audio_dir, args.model, args.out, progress=not args.quiet and not args.json,
                          rebuild=args.rebuild, batch_size=args.batch_size, image_runtime=args.image_runtime,
                          engine=args.engine, address=args.address, workers=args.workers,
                          transcribe=args.transcribe, asr_language=args.asr_language)
    print(json.dumps(summary.as_dict(), indent=1) if args.json else summary)
    return 0


def _cmd_embed(args) -> int:
    from claspkit.search.embed import embed_folder

    summary = embed_folder(args.audio_dir, args.model, args.out, segment=args.segment, batch_size=args.batch_size,
                           progress=not args.quiet and not args.json, image_runtime=args.image_runtime)
    if args.json:
        from claspkit.paths import display_path

        print(json.dumps({**summary.__dict__, "out": display_path(summary.out)}, indent=1))
    else:
        print(summary)
    return 0


def _cmd_search(args) -> int:
    from claspkit.search.query import search

    hits = search(args.index, args.query, k=args.k, lang=args.lang, rank=args.rank, refine=not args.no_refine)
    if args.json:
        payload = {"query": args.query, "lang": args.lang, "k": args.k,
                   "rank": hits[0].rank_mode if hits else args.rank,
                   "hits": [{"rank": i, **h.as_dict()} for i, h in enumerate(hits, 1)]}
        print(json.dumps(payload, ensure_ascii=False, indent=1))
    elif not hits:
        print("no hits: the index has no segments (see the skipped files of `claspkit index`)")
    else:
        print(hits_table(hits))
    return 0


def _cmd_adapt(args) -> int:
    from claspkit.adapt.pseudo import Confidence
    from claspkit.adapt.run import adapt
    from claspkit.paths import display_path

    finetune = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None}
    report = adapt(args.audio, args.model, args.out, asr=args.asr, language=args.language,
                   confidence=Confidence(min_avg_logprob=args.min_logprob), finetune=finetune, force=args.force,
                   image_runtime=args.image_runtime, progress=not args.quiet and not args.json)
    report = {**report, "out": display_path(report["out"])}
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=1, default=float))
    else:
        kept = report["pseudo"]
        print(f"adapted {report['adapted_from']['path']} -> {report['out']}: {report['segments']} segments from "
              f"{report['sources']} files, {kept['kept'] - kept.get('repeated text', 0)} confident distinct "
              f"transcripts ({report['train_items']} training, {report['val_items']} validation), best epoch "
              f"{report['best_epoch']}; the model and its report ({report['out']}/adapt.json) are written")
    return 0


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _cmd_backbones(args) -> int:
    from claspkit.encoders.backbones import list_backbones

    rows = list_backbones(args.role)
    table = [("role", "name", "dim", "source", "description")]
    table += [(r["role"], r["name"], str(r["dim"] if r["dim"] is not None else "-"), r["source"], r["description"])
              for r in rows]
    widths = [max(len(t[c]) for t in table) for c in range(4)]
    for t in table:
        print("  ".join(f"{v:<{w}}" for v, w in zip(t[:4], widths)) + "  " + t[4])
    return 0


def _cmd_params(args) -> int:
    from claspkit.config import describe

    print(describe())
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="claspkit", description="Search recordings with text in any language (CLASP).")
    p.add_argument("--version", action="version", version=f"claspkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    q = sub.add_parser("index", help="index a folder of audio files with a trained checkpoint",
                       description="Segment every audio file under AUDIO_DIR (wav, flac, mp3, ogg, opus, m4a), "
                                   "embed the segments and write or update INDEX. "
                                   "Re-running embeds only new and changed files; a killed run resumes.")
    q.add_argument("audio_dir", metavar="AUDIO_DIR")
    q.add_argument("--model", default=None, metavar="CHECKPOINT",
                   help="checkpoint folder (model.safetensors + config.json) or shipped model name "
                        "(default: the model that ships with claspkit)")
    q.add_argument("--out", required=True, metavar="INDEX", help="index folder to create or update")
    q.add_argument("--rebuild", action="store_true", help="replace an index built with another model or settings")
    q.add_argument("--batch-size", type=_positive_int, default=16, help="segments per encoder batch (default 16)")
    q.add_argument("--image-runtime", choices=IMAGE_RUNTIMES, default="onnx",
                   help="run the spectrogram CNN in ONNX Runtime (default; ~3x faster) or torch (the features "
                        "training used, bit for bit; an index stays with the runtime it was built with)")
    q.add_argument("--engine", choices=ENGINES, default="local",
                   help="run the backbones here (default) or on Ray (needs claspkit[ray]); same index either way")
    q.add_argument("--address", default=None, metavar="ADDR",
                   help="with --engine ray: a running cluster (HOST:6379 or auto; default: a local Ray instance)")
    q.add_argument("--workers", type=_positive_int, default=None,
                   help="with --engine ray: actors per backbone (default: the cluster's CPUs shared out)")
    q.add_argument("--transcribe", nargs="?", const=SCHEMA["asr_backbone"].default, default=None, metavar="ASR",
                   help="also store each segment's transcript with word times, and its text embedding, for "
                        "`search --rank transcript|hybrid` (ASR: whisper-tiny.en, the default, or whisper-base); "
                        "resumable, and a re-run transcribes only what is missing")
    q.add_argument("--asr-language", default=None, metavar="LANG",
                   help="with --transcribe: the language spoken (default en; auto detects it; whisper-base only)")
    q.add_argument("--json", action="store_true", help="print the summary as JSON (no progress bar)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_cmd_index)

    s = sub.add_parser("search", help="search an index with a text query",
                       description="Print the k best segments for QUERY (any language the text encoder knows).")
    s.add_argument("index", metavar="INDEX")
    s.add_argument("query", metavar="QUERY")
    s.add_argument("-k", type=_positive_int, default=10, help="number of hits (default 10)")
    s.add_argument("--lang", default=None, help="language code of the query, recorded in --json output (e.g. fr)")
    s.add_argument("--rank", choices=RANKS, default=None,
                   help="rank by the CLASP vectors, by the stored transcripts, or by both fused (default: hybrid "
                        "when the index was built with --transcribe, else clasp)")
    s.add_argument("--no-refine", action="store_true",
                   help="print the segments' own edges (default: narrowed to the hit's words, or a finer VAD cut)")
    s.add_argument("--json", action="store_true", help="print hits as JSON (with the transcript: text and words)")
    s.set_defaults(func=_cmd_search)

    e = sub.add_parser("embed", help="write one CLASP vector per file (or per speech segment) to Parquet",
                       description="Embed every audio file under AUDIO_DIR into OUT (.parquet: id, path, sha256, "
                                   "start_s, end_s, vector). A killed run resumes; a rerun embeds only new files.")
    e.add_argument("audio_dir", metavar="AUDIO_DIR")
    e.add_argument("--model", default=None, metavar="MODEL",
                   help="checkpoint folder, hub id or shipped model name (default: the model that ships with claspkit)")
    e.add_argument("--out", required=True, metavar="OUT", help="the .parquet file to write")
    e.add_argument("--segment", action="store_true", help="one vector per speech segment (VAD) instead of per file")
    e.add_argument("--batch-size", type=_positive_int, default=16, help="clips per encoder batch (default 16)")
    e.add_argument("--image-runtime", choices=IMAGE_RUNTIMES, default="onnx", help="as for `claspkit index`")
    e.add_argument("--json", action="store_true", help="print the summary as JSON (no progress bar)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_embed)

    a = sub.add_parser("adapt", help="fit a model to your own untranscribed recordings (distillation from the cascade)",
                       description="Transcribe the recordings under AUDIO with the cascade's ASR, keep the confident "
                                   "transcripts, and fine-tune the model's head so each segment lands on its "
                                   "transcript. MODEL is only read; NEW is written at the end. Resumable: re-run "
                                   "the same command after an interruption.")
    a.add_argument("audio", metavar="AUDIO", help="a folder of recordings (long ones are cut by the VAD) or one file")
    a.add_argument("--model", default=None, metavar="MODEL",
                   help="the checkpoint folder to start from (default: the model that ships with claspkit)")
    a.add_argument("--out", required=True, metavar="NEW", help="the new checkpoint folder")
    a.add_argument("--asr", default="whisper-base", help="the teacher ASR (default whisper-base)")
    a.add_argument("--language", default="en", help="the language spoken (default en; auto detects it)")
    a.add_argument("--min-logprob", type=_float, default=-0.6,
                   help="keep transcripts whose mean token log-probability is at least this (default -0.6)")
    a.add_argument("--epochs", type=_positive_int, default=None, help="most fine-tuning epochs (default 30)")
    a.add_argument("--lr", type=_float, default=None, help="fine-tuning learning rate (default 1e-4)")
    a.add_argument("--image-runtime", choices=IMAGE_RUNTIMES, default="onnx", help="as for `claspkit index`")
    a.add_argument("--force", action="store_true", help="replace NEW if it exists (never MODEL)")
    a.add_argument("--json", action="store_true", help="print the report as JSON (no progress bar)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=_cmd_adapt)

    b = sub.add_parser("backbones", help="list the registered encoders")
    b.add_argument("--role", choices=("speech", "image", "text", "asr"), default=None)
    b.set_defaults(func=_cmd_backbones)

    c = sub.add_parser("params", help="print the parameter reference (Markdown)")
    c.set_defaults(func=_cmd_params)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:                 # usage error (2) or --help/--version (0)
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    try:
        return args.func(args)
    except ClaspkitError as e:
        message = " ".join(str(e).split())          # always one line
        print(f"claspkit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:                         # `claspkit backbones | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"claspkit {args.command}: interrupted" +
              ("; the previous index is intact and re-running the same command resumes"
               if args.command == "index" else "; what is finished is kept and re-running the same command resumes"
               if args.command == "adapt" else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
