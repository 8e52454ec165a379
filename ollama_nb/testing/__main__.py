"""``python -m ollama_nb.testing``: run the Ollama stand-in until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Final

from ._knobs import Knobs, knob_help
from ._server import StandInServer

# A person watches this server (tutorials, notebooks/open): let a pull's bar be seen.
CLI_PULL_SECONDS: Final = 2.0


def _parser() -> argparse.ArgumentParser:
    defaults = Knobs()
    parser = argparse.ArgumentParser(
        prog="python -m ollama_nb.testing",
        description=(
            "Serve a protocol-faithful stand-in for the Ollama HTTP API. It runs no model: "
            "answers are deterministic filler text starting with '[stand-in]'. Models: "
            "stand-in (completion), stand-in-think (completion, thinking), stand-in-vision "
            "(completion, vision), stand-in-embed (embedding); /api/pull adds more. Like "
            "Ollama, each model serves --num-parallel requests at once and queues the rest."
        ),
        epilog=(
            "Per-request knobs go in a request's options with the prefix 'standin_', e.g. "
            '{"options": {"standin_token_interval": 0.2}}. Knobs:\n  '
            + knob_help().replace("\n", "\n  ")
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=11434, help="port, 0 for any free one (default %(default)s)"
    )
    parser.add_argument(
        "--token-interval",
        type=float,
        default=defaults.token_interval,
        metavar="S",
        help="seconds between streamed chunks (default %(default)s)",
    )
    parser.add_argument(
        "--first-chunk-delay",
        type=float,
        default=defaults.first_chunk_delay,
        metavar="S",
        help="seconds before the first chunk, like a model load (default %(default)s)",
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=defaults.tokens,
        metavar="N",
        help="tokens per answer (default %(default)s)",
    )
    parser.add_argument(
        "--num-parallel",
        type=int,
        default=defaults.num_parallel,
        metavar="N",
        help="requests one model serves at once, like OLLAMA_NUM_PARALLEL (default %(default)s)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=defaults.max_queue,
        metavar="N",
        help="requests that may wait, like OLLAMA_MAX_QUEUE (default %(default)s)",
    )
    parser.add_argument(
        "--pull-seconds",
        type=float,
        default=CLI_PULL_SECONDS,
        metavar="S",
        help="each /api/pull lasts about S seconds, long enough to watch a progress bar"
        " (default %(default)s; 0: at once)",
    )
    parser.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' on every request"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server = StandInServer(
            args.host,
            args.port,
            token_interval=args.token_interval,
            first_chunk_delay=args.first_chunk_delay,
            tokens=args.tokens,
            num_parallel=args.num_parallel,
            max_queue=args.max_queue,
            pull_seconds=args.pull_seconds,
            api_key=args.api_key,
        )
        server.start()
    except (OSError, ValueError) as exc:  # KnobError is a ValueError
        print(f"Ollama stand-in: cannot start: {exc}", file=sys.stderr)
        return 1
    print(f"Ollama stand-in (not a model) listening on {server.url}", flush=True)
    # Waiting in slices keeps the main thread responsive to signals on every platform.
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
