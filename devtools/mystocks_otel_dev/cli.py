"""`mystocks-otel demo | traffic | stack`: the dev tools' commands.

Registered in the library's CLI through the ``mystocks_otel.cli`` entry-point group.
"""

from __future__ import annotations

from pathlib import Path


def demo(args) -> int:
    from .demo.server import serve

    serve(host=args.host, port=args.port, reload=args.reload)
    return 0


def traffic(args) -> int:
    from .demo.traffic import main

    return main(args.rest) or 0


def stack(args) -> int:
    from .stack import runner

    if args.action == "up":
        return runner.up(Path(args.dir), test_overlay=args.test_overlay)
    if args.action == "status":
        return runner.status(Path(args.dir), as_json=args.json)
    return runner.down(Path(args.dir))


def register(sub) -> None:
    demo_parser = sub.add_parser("demo", help="run the instrumented MyStocks demo API under uvicorn")
    demo_parser.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this machine only)")
    demo_parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    demo_parser.add_argument("--reload", action="store_true",
                      help="restart when the demo's source changes (development)")
    demo_parser.set_defaults(run=demo)

    traffic_parser = sub.add_parser("traffic", help="drive bounded traffic at a running demo "
                             "(`mystocks-otel traffic --help` for its options)",
                             add_help=False)  # its own options belong to demo.traffic
    traffic_parser.set_defaults(run=traffic, pass_rest=True)

    stack_parser = sub.add_parser("stack", help="the whole monitoring stack on this machine: up, status, down")
    stack_parser.add_argument("action", choices=("up", "status", "down"),
                       help="up starts every part on 127.0.0.1, status checks them, down stops them")
    stack_parser.add_argument("--dir", default=".stack",
                       help="where the stack keeps its state, data and logs (default: .stack)")
    stack_parser.add_argument("--test-overlay", action="store_true",
                       help="1 s scrape/evaluation, short `for` and routing waits, the trading session "
                            "always open: what the live tests run (thresholds and exprs unchanged)")
    stack_parser.add_argument("--json", action="store_true",
                       help="status: every part's state and URLs as JSON (the trace and log stores too)")
    stack_parser.set_defaults(run=stack)
