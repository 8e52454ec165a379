"""``python -m ollama_nb.testing``: run the Ollama stand-in until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._knobs import Knobs, knob_help
from ._server import StandInServer


def _parser() -> argparse.ArgumentParser:
    defaults = Knobs()
    parser = argparse.ArgumentParser(
        prog="python -m ollama_nb.testing",
        description=(
            "Serve a protocol-faithful stand-in for the Ollama HTTP API. It runs no model: "
            "answers are deterministic filler text starting with '[stand-in]'. Models: "
            "stand-in, stand-in-think."
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
    server = StandInServer(
        args.host,
        args.port,
        token_interval=args.token_interval,
        first_chunk_delay=args.first_chunk_delay,
        tokens=args.tokens,
        api_key=args.api_key,
    )
    try:
        server.start()
    except (OSError, ValueError) as exc:
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
