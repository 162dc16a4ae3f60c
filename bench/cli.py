"""What every `python -m bench.*` command shares: the one-line error handling and the common
options (data folder, cache folder, device, threads).

A known problem (BenchError, a bad option) is one line on stderr and exit 2; Ctrl-C is one line
and exit 130, after the finished work is already on disk.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from bench.config import BenchError

DATA_DIR_ENV = "BENCH_DATA_DIR"
CACHE_DIR_ENV = "BENCH_CACHE_DIR"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2, like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def _threads(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid thread count '{value}' (expected an integer >= 0)") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"thread count must be >= 0, got {n}")
    return n


def add_data_options(p: argparse.ArgumentParser) -> None:
    """--data-dir and --cache-dir: where the raw data and the encoded-data cache live."""
    p.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV),
                   help="folder with <dataset>/train.parquet and test.parquet for offline use "
                        f"(default: ${DATA_DIR_ENV}, else the Hugging Face hub)")
    p.add_argument("--cache-dir", default=None,
                   help=f"where encoded datasets are cached (default: ${CACHE_DIR_ENV} or ~/.cache/bench)")


def add_compute_options(p: argparse.ArgumentParser, device: str) -> None:
    """--device (default `device`) and --threads (torch CPU threads; overrides the config's)."""
    p.add_argument("--device", default=device, help=f"cpu, cuda or auto (cuda when available); default {device}")
    p.add_argument("--threads", type=_threads, default=None,
                   help="torch CPU threads (default: the config's train.threads, else torch's default)")


def data_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.data_dir) if args.data_dir else None


def cache_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.cache_dir) if args.cache_dir else None


def set_threads(requested: int | None, config_threads: int) -> None:
    """torch CPU threads: the command line wins over the config; 0 or unset keeps torch's default.
    (Not part of any result's configuration: CPU results here do not depend on it.)"""
    threads = requested if requested is not None else config_threads
    if threads:
        import torch

        torch.set_num_threads(threads)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup (a running Optuna trial marked failed,
    worker processes stopped, temporary files removed) happens the same way."""


def _raise_terminated(signum, frame):
    raise Terminated()


def _redeliver_swallowed_interrupts(previous_hook: Callable) -> Callable:
    """A signal whose handler runs inside a weakref callback or a `__del__` (the garbage collector
    can run those between any two bytecodes) has its exception swallowed: Python prints
    "Exception ignored" and carries on, and the Ctrl-C or SIGTERM would be lost. Send the same
    signal again, from another thread (raised here it would be swallowed too), so that the main
    thread raises it in ordinary code a moment later."""
    import signal
    import threading

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            again = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
            threading.Timer(0.01, os.kill, (os.getpid(), again)).start()
        else:
            previous_hook(unraisable)

    return hook


def _from_interrupt(exc: BaseException | None) -> bool:
    """Whether an exception is Ctrl-C / SIGTERM, or was raised while one was being handled (SQLAlchemy
    closing a cursor the signal cut off, say): its chain of causes and contexts holds a KeyboardInterrupt."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a trial stopped by Ctrl-C / SIGTERM with its traceback, and SQLAlchemy logs the cursor
    it could not close after the signal with one too; keep their one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _from_interrupt(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        return True


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def unreadable_files_are_one_line(execute: Callable[[argparse.Namespace], int], what: str
                                  ) -> Callable[[argparse.Namespace], int]:
    """For the commands that only read files (report, compare): a file in the folder that cannot be
    parsed (corrupt JSON, CSV or gzip, text where a number belongs) is a BenchError, not a traceback."""
    import zlib

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return execute(args)
        except (ValueError, EOFError, zlib.error) as exc:
            raise BenchError(f"{what}: a file could not be read ({type(exc).__name__}: "
                             f"{_one_line(exc)[:200]})") from None

    return wrapped


def cli_main(parse_args: Callable[[list[str] | None], argparse.Namespace],
             execute: Callable[[argparse.Namespace], int], argv: list[str] | None, interrupted: str) -> int:
    """The shared entry of every command: BenchError → one line + exit 2; an operating-system error
    (disk full, read-only or missing path) → one line + exit 2; Ctrl-C → `interrupted` + exit 130,
    SIGTERM → the same + exit 143 (finished work is already on disk)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoInterruptTraceback())
    args = parse_args(argv)
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
        sys.unraisablehook = _redeliver_swallowed_interrupts(sys.unraisablehook)
    try:
        return execute(args)
    except BenchError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # ENOSPC, EACCES, EROFS, ...: the atomic writes left every file whole
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or _one_line(exc)}{where}; files already written are intact", file=sys.stderr)
        return 2
    except Terminated:
        print(f"terminated: {interrupted}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
