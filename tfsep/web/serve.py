"""Serve a folder on 127.0.0.1 with the headers that WebAssembly threads need: `python serve.py [DIR] [--port N]`.

Threads share memory (SharedArrayBuffer), which a browser allows only to a cross-origin
isolated page: one served with `Cross-Origin-Opener-Policy: same-origin` and
`Cross-Origin-Embedder-Policy: require-corp`. This server sends both, and `.wasm` files as
`application/wasm`. It uses the standard library alone, so `tfsep export --format web` copies
it into the folder as `serve.py`, which runs without tfsep (`python -m tfsep.web.serve DIR` too).
"""

import argparse
import functools
import http.server
from pathlib import Path

HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
           "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-cache"}


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with `HEADERS` and the MIME types that module scripts and WebAssembly need."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}

    def end_headers(self):
        for name, value in HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        if self.server.verbose:
            super().log_message(format, *args)


def server(folder, host="127.0.0.1", port=8000, verbose=False):
    """A ThreadingHTTPServer serving `folder` at `host`:`port` (0: any free port); call `.serve_forever()`."""
    handler = functools.partial(IsolatedHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer((host, port), handler)
    httpd.verbose = verbose
    return httpd


def main(argv=None):
    """The command line: serve DIR (default: the folder this file is in) until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if not (args.folder / "index.html").is_file():
        parser.error(f"{args.folder}: has no index.html (export one with tfsep export MODEL --format web)")
    httpd = server(args.folder, args.host, args.port, verbose=True)
    print(f"serving {args.folder} at http://{args.host}:{httpd.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
