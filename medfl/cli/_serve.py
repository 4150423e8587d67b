"""``medfl serve``: the web service and its page (medfl.api on uvicorn)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

LOOPBACK = "127.0.0.1"


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="the web service and page for researchers")
    serve.add_argument(
        "--host", default=LOOPBACK, help=f"address to bind (default {LOOPBACK}: this machine only)"
    )
    serve.add_argument("--port", type=port, default=8000, help="default 8000")
    serve.add_argument(
        "--data-dir", type=Path, help="database and run folders (default: MEDFL_DATA_DIR)"
    )
    serve.add_argument(
        "--sites-file",
        type=Path,
        help="YAML of the sites served: name -> data source, policy (default: the demo's four)",
    )
    serve.set_defaults(handler=cmd_serve)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from medfl.api import Settings, create_app

    overrides = {"data_dir": args.data_dir, "sites_file": args.sites_file}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    app = create_app(settings)
    where = f"http://{args.host}:{args.port}"
    if app.state.token_generated:
        # Once, here; the URL's #fragment never reaches a server (nor its logs).
        print(f"medfl serve: API token (shown once): {app.state.token}", file=sys.stderr)
        print(f"medfl serve: open {where}/#token={app.state.token}", file=sys.stderr)
    else:
        print(f"medfl serve: open {where}/ (token: MEDFL_API_TOKEN)", file=sys.stderr)
    if not _loopback(args.host):
        print(
            f"medfl serve: warning: listening on {args.host}, not only this machine; "
            "put TLS in front (a reverse proxy or the cluster's ingress)",
            file=sys.stderr,
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
