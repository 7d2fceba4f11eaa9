"""LiteRT.js, the WebAssembly runtime the page runs the model in: fetched from npm, verified, unpacked.

The two packages are fetched as npm publishes them, tarballs from the registry (or an npm
registry mirror, `--runtime-url`, or `TFSEP_MIRROR`), into `$TFSEP_HOME/downloads`
(`providers.download.fetch`), each checked against the `dist.integrity` pinned here; a copy
placed there by hand is used instead of the network, checked the same way. No npm is needed.

Only what the page loads is unpacked: core's `dist/index.js` and its WebAssembly builds (plain
and threaded, for browsers with relaxed SIMD, `compat` for those without, and `jspi`, which
the webgpu accelerator needs to run a graph it delegates only in part), wasm-utils''
`dist/index.js`, and each `package.json` (name, version, licence). Core imports wasm-utils by
its bare npm name, which a worker cannot map (import maps reach documents only), so that one
specifier is rewritten to the relative path of the unpacked copy.
"""

import tarfile
from pathlib import Path

from tfsep.providers import home
from tfsep.providers.download import check_integrity, fetch

REGISTRY = "https://registry.npmjs.org"
VERSION = "2.5.3"
# {package: (tarball path on the registry, npm's dist.integrity, the files the page needs)}
PACKAGES = {
    "core": (f"/@litertjs/core/-/core-{VERSION}.tgz",
             "sha512-PlGmbMOq9WitX7FO0jhbdJw9GthatsyuCQXjTt/wJZo0FLaw48q4tz8IwqgqCIkviYGr9OFDL1kCnN4nzWoyJQ==",
             ["package.json", "dist/index.js"]
             + [f"wasm/litert_wasm{build}_internal.{suffix}" for build in ("", "_threaded", "_compat", "_jspi")
                for suffix in ("js", "wasm")]),
    "wasm-utils": (f"/@litertjs/wasm-utils/-/wasm-utils-{VERSION}.tgz",
                   "sha512-4fJiw6tBQnIs+0jH/OQ16nYOiSl8/+zZnn5h2ul8aTKHi05sVqZW580Tmk78pC2kT39A9OYBVdFawteZ/sI1kQ==",
                   ["package.json", "dist/index.js"]),
}
BARE_IMPORT = b'from "@litertjs/wasm-utils"'
RELATIVE_IMPORT = b'from "../../wasm-utils/dist/index.js"'  # from core/dist/ to wasm-utils/dist/


def tarballs(registry=None, progress=True):
    """{package: path} of the verified tarballs in `$TFSEP_HOME/downloads`, fetched from the npm registry
    `registry` (default `REGISTRY`; `TFSEP_MIRROR` replaces its host) where they are not there yet.
    DownloadError, one line, for a failed fetch or a copy whose integrity differs."""
    base = (registry or REGISTRY).rstrip("/")
    folder = home() / "downloads"
    found = {}
    for package, (path, integrity, _) in PACKAGES.items():
        target = folder / f"litertjs-{package}-{VERSION}.tgz"
        if target.is_file():
            check_integrity(target, integrity, f"{target} (placed in tfsep's cache; delete it to fetch it again)")
        else:
            fetch(base + path, target, integrity=integrity, progress=progress,
                  hand_hint=f"download {REGISTRY + path} by hand and put it at {target}")
        found[package] = target
    return found


def unpack(tarball_paths, folder):
    """Unpack the files the page needs from the `tarballs` into `folder`/<package>/ (e.g. `core/dist/index.js`),
    with core's import of wasm-utils made relative; ValueError if a tarball lacks one of them."""
    for package, tarball in tarball_paths.items():
        with tarfile.open(tarball, "r:gz") as archive:
            for name in PACKAGES[package][2]:
                try:
                    data = archive.extractfile(f"package/{name}").read()
                except (KeyError, AttributeError):
                    raise ValueError(f"{tarball}: has no package/{name}") from None
                if (package, name) == ("core", "dist/index.js"):
                    if data.count(BARE_IMPORT) != 1:
                        raise ValueError(f"{tarball}: its dist/index.js does not import @litertjs/wasm-utils once")
                    data = data.replace(BARE_IMPORT, RELATIVE_IMPORT)
                target = Path(folder) / package / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
