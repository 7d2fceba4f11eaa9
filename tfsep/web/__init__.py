"""The browser form of a model (`tfsep export --format web`, `formats.web`): what goes into its folder.

- `page/`: the page, `index.html` and plain ES modules, with no bundler and no build step;
- `runtime`: LiteRT.js, the npm packages `@litertjs/core` and `@litertjs/wasm-utils` at a
  pinned version, fetched, verified by npm's integrity hash and unpacked;
- `serve`: a static server for the folder on 127.0.0.1 that sends the cross-origin headers
  that WebAssembly threads need; it uses the standard library alone, and is copied into the
  folder as `serve.py`.
"""

from pathlib import Path

PAGE = Path(__file__).parent / "page"  # the page's files, copied into the folder as they are
