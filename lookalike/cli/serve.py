"""The serve verb: the HTTP API and the search page over one or more indexes."""

from __future__ import annotations

import argparse
from pathlib import Path

from lookalike.cli.common import CommandError, add_model_options, model_options
from lookalike.index.autoselect import parse_memory
from lookalike.index.folder import IndexFolder


def serve_command(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise CommandError("serving needs the web extra: pip install 'lookalike[serve]'") from None

    from lookalike.web import ServerSettings, create_app
    from lookalike.web.connections import guarded_protocol
    from lookalike.web.logs import configure_logging
    from lookalike.web.tuning import tune_for_single_queries
    from lookalike.web.work import map_large_buffers

    settings = ServerSettings.from_env(allowed_roots=[Path(root) for root in args.allowed_roots] or None,
                                       index_root=args.index_root, max_upload_bytes=args.max_upload_bytes,
                                       cors_origins=args.cors_origins or None)
    for root in settings.allowed_roots:
        if not root.is_dir():
            raise CommandError(f"--allowed-roots {root}: not a folder")
    for folder in args.index:
        _create_if_new(Path(folder), args)
    configure_logging()
    tune_for_single_queries()
    map_large_buffers()
    app = create_app(args.index, settings)
    print(f"lookalike: serving {', '.join(app.state.registry.names())} on http://{args.host}:{args.port}/ "
          f"(API docs at /docs)", flush=True)
    protocol = guarded_protocol(settings.header_timeout_seconds, settings.body_timeout_seconds,
                                settings.max_connections)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False, http=protocol)
    return 0


def _create_if_new(folder: Path, args: argparse.Namespace) -> None:
    """A missing or empty folder becomes an empty index (to fill by upload); anything else must be an index."""
    from lookalike.index import ImageIndex

    files = IndexFolder(folder)
    if files.is_index():
        return
    if not files.is_empty_or_missing():
        raise CommandError(f"{folder} is not a lookalike index and not empty; give an index folder")
    with ImageIndex.create(folder, **model_options(args)) as index:
        model = index.info()["model"]
    print(f"lookalike: created an empty index in {folder} ({model})", flush=True)


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("serve", help="HTTP API and search page", description=(
        "Serve indexes over HTTP: the JSON API (docs at /docs) and the search page at /. "
        "Writes need LOOKALIKE_API_TOKEN when it is set."))
    parser.set_defaults(command=serve_command)
    parser.add_argument("--index", action="append", required=True,
                        help="index folder (repeat for more); a missing or empty folder becomes an empty index")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--allowed-roots", action="extend", nargs="+", default=[], metavar="DIR",
                        help="server-side folders whose images may be added by path")
    parser.add_argument("--index-root", type=Path, metavar="DIR",
                        help="folder where POST /api/indexes creates indexes; only indexes in it can be deleted "
                             "over HTTP")
    parser.add_argument("--max-upload-bytes", type=parse_memory, metavar="SIZE",
                        help="largest image upload, like 20M (default 20M)")
    parser.add_argument("--cors-origins", action="extend", nargs="+", metavar="URL",
                        help="allow these browser origins (off by default)")
    add_model_options(parser)
