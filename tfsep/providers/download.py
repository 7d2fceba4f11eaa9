"""Fetching a publisher's file into tfsep's cache, verified, for the providers.

`fetch(url, target, ...)` downloads `url` with urllib (through `TFSEP_MIRROR` where it is set,
`publisher_url`) into a temporary file beside `target`, hashing it as it comes, checks it and
only then renames it to `target` (`files.replace_atomically`): a failed or interrupted fetch
leaves nothing at `target` or beside it. The checks:

- the SHA-256: the full one when the caller pins it, else its first hex digits
  (`sha256_prefix`, torch.hub's rule for files named like `vocals-b62c91ce.pth`,
  `sha256_prefix_of`);
- npm's Subresource Integrity string (`sha512-<base64>`) when the caller pins one (`integrity`);
- the length: the Content-Length the server sent (a cut connection gives a short body), and
  `size` where the caller knows it;
- not an error page: a body served as `text/html`, or that begins `<!DOCTYPE` or `<html`, is
  refused, since some hosts answer a missing file with a page and status 200.

Every failure is a `DownloadError` whose one line names the URL and what was wrong; one that
says the network could not be reached also says where to put the file fetched by hand.
`checksums(url)` reads a release's checksum index, as Spleeter's `checksum.json` publishes
{name: SHA-256} beside its archives.
"""

import base64
import hashlib
import io
import json
import os
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException, IncompleteRead
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from tfsep import __version__, files
from tfsep.providers import PretrainedError, file_digest

MIRROR = "TFSEP_MIRROR"  # http://HOST:PORT: fetch every publisher's path from there instead
TIMEOUT = 60.0  # seconds to connect, and the longest wait for the next bytes
USER_AGENT = f"tfsep/{__version__} (Python urllib)"
BLOCK = 1 << 16  # bytes read at a time
_HTML_STARTS = (b"<!doctype", b"<html")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PREFIX = re.compile(r"-([0-9a-f]{8})(?:\.[^-]*)?$")  # `-<8 hex digits>`, then a suffix without `-`


class DownloadError(PretrainedError):
    """A file that could not be downloaded, or that failed its checks; the message names the URL and what was
    wrong."""


def publisher_url(url):
    """`url`, or with `TFSEP_MIRROR=http://HOST:PORT` set, the same path (and query) on that host."""
    mirror = os.environ.get(MIRROR, "").strip()
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(mirror)
    try:
        parts.port  # raises ValueError for a port that is not a number in range
        malformed = (parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/")
                     or parts.query or parts.fragment)
    except ValueError:
        malformed = True
    if malformed:
        raise DownloadError(f"{MIRROR}={mirror!r} is not a mirror address; give one like http://127.0.0.1:8765 "
                            "(a scheme, a host and an optional port, no path), or unset it to fetch from the "
                            "publishers")
    original = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, original.path, original.query, ""))


def sha256_prefix_of(filename):
    """The 8 hex digits after the last `-` of a file name, before its suffix (`vocals-b62c91ce.pth` -> `b62c91ce`):
    what torch.hub checks the file's SHA-256 begins with. None for a name without them."""
    match = _PREFIX.search(PurePosixPath(str(filename)).name)
    return match[1] if match else None


def fetch(url, target, sha256=None, sha256_prefix=None, size=None, progress=True, log=None, hand_hint=None,
          integrity=None):
    """Download `url` into the file `target`, verified, atomically; returns `target` as a Path.

    url: the publisher's address; `TFSEP_MIRROR` replaces its scheme and host (`publisher_url`).
    sha256: the file's pinned SHA-256 (hex); else sha256_prefix: the hex digits it must begin with.
    integrity: a pinned Subresource Integrity string, `sha512-<base64>` (npm's `dist.integrity`).
    size: the file's length in bytes, where known.
    progress: a progress bar in bytes on stderr, where stderr is a terminal.
    log: log(message) says what is fetched, from where.
    hand_hint: what the user should do when the network cannot be reached, e.g. "download it by
    hand into ~/.cache/tfsep/downloads/"; by default, put the file at `target`.
    Raises DownloadError (a PretrainedError) with one line naming the URL and what was wrong; then
    nothing is left at `target` (an existing file there stays as it was) or beside it.
    """
    target = Path(target)
    source = publisher_url(url)
    hint = hand_hint or f"download {url} by hand and put it at {target}"
    if log is not None:
        log(f"downloading {_named(url, source)} into {target}")

    def write(temporary):
        with open(temporary, "wb") as out:
            digest, length = _download(url, source, out, progress, hint)
        _verify(_named(url, source), digest, length, sha256, sha256_prefix, size)
        if integrity is not None:
            check_integrity(temporary, integrity, _named(url, source))

    files.replace_atomically(target, write)
    return target


def checksums(url, progress=False, hand_hint=None):
    """{name: SHA-256} from a release's checksum index at `url` (Spleeter's `checksum.json`: a JSON object of
    archive names to lowercase hex digests); DownloadError if it cannot be fetched or is not one."""
    source = publisher_url(url)
    hint = hand_hint or f"download {url} by hand"
    body = io.BytesIO()
    _download(url, source, body, progress, hint)
    return checksum_index(body.getvalue(), _named(url, source))


def checksum_index(body, where):
    """{name: SHA-256} from the bytes of a checksum index (`checksums`), fetched or placed by hand; DownloadError
    naming `where` if it is not one."""
    try:
        index = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DownloadError(f"{where}: not a checksum index, not JSON ({error})") from None
    if not isinstance(index, dict) or not all(isinstance(digest, str) and _SHA256.fullmatch(digest.lower())
                                              for digest in index.values()):
        raise DownloadError(f"{where}: not a checksum index (a JSON object of names to SHA-256 hex digests)")
    return {name: digest.lower() for name, digest in index.items()}


def _named(url, source):
    """How a message names what was fetched: the URL, and the publisher's when a mirror served it."""
    return source if source == url else f"{source} (mirror of {url})"


def _download(url, source, out, progress, hint):
    """Stream `source` into the binary file `out`; returns (SHA-256 hex digest, bytes written). Refuses an HTTP
    error, an unreachable host, an HTML page and a body shorter than its Content-Length."""
    where = _named(url, source)
    if urllib.parse.urlsplit(source).scheme not in ("http", "https"):
        raise DownloadError(f"{where}: not an http or https address")
    request = urllib.request.Request(source, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as error:
        error.close()
        raise DownloadError(f"cannot fetch {where} (HTTP {error.code} {error.reason}); {hint}") from None
    except (OSError, HTTPException) as error:  # URLError (refused, DNS), timeouts, a dropped connection
        raise DownloadError(f"cannot reach {where} ({_reason(error)}); with no network, {hint}") from None
    digest, length = hashlib.sha256(), 0
    with response:
        content_type = response.headers.get_content_type()
        if content_type == "text/html":
            raise DownloadError(f"{where}: the server sent an HTML page (Content-Type {content_type}), not the file; "
                                "the address is wrong or the file has moved")
        expected = _content_length(response)
        bar = tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                   desc=PurePosixPath(urllib.parse.urlsplit(source).path).name or source,
                   disable=None if progress else True, file=sys.stderr)  # None: off where stderr is no terminal
        with bar:
            while block := _read(response, where, hint):
                if length == 0 and block.lstrip()[:9].lower().startswith(_HTML_STARTS):
                    raise DownloadError(f"{where}: the server sent an HTML page, not the file; the address is wrong "
                                        "or the file has moved")
                out.write(block)
                digest.update(block)
                length += len(block)
                bar.update(len(block))
    if expected is not None and length != expected:
        raise DownloadError(f"{where}: the connection ended after {length} of {expected} bytes (Content-Length); "
                            "try again")
    return digest.hexdigest(), length


def _read(response, where, hint):
    """The next block of the body, b"" at its end; a cut connection or a stall longer than TIMEOUT is a
    DownloadError."""
    try:
        return response.read(BLOCK)
    except IncompleteRead as error:  # the connection ended early: the caller compares the length it got
        return error.partial
    except (OSError, HTTPException) as error:  # a reset connection, or a stall (socket.timeout is an OSError)
        raise DownloadError(f"{where}: the download broke off ({_reason(error)}); try again, or {hint}") from None


def _content_length(response):
    """The Content-Length the server sent, as an int, or None."""
    try:
        length = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _reason(error):
    """A network error in a few words: "Connection refused", "timed out", "Name or service not known"."""
    reason = getattr(error, "reason", error) if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    return getattr(reason, "strerror", None) or str(reason) or type(reason).__name__


def check_integrity(path, integrity, where):
    """Check the file `path` against the Subresource Integrity string `integrity` (`sha512-<base64>`, as npm
    publishes it); DownloadError naming `where` if it differs."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm not in ("sha256", "sha384", "sha512") or not expected:
        raise ValueError(f"{integrity!r} is not a Subresource Integrity string like sha512-<base64>")
    found = base64.b64encode(file_digest(path, algorithm).digest()).decode()
    if found != expected:
        raise DownloadError(f"{where}: integrity {algorithm}-{found} differs from the published {integrity}; "
                            "nothing was kept")


def _verify(where, digest, length, sha256, sha256_prefix, size):
    """Check a downloaded body's SHA-256 `digest` and `length` against what the caller pinned."""
    if size is not None and length != size:
        raise DownloadError(f"{where}: {length} bytes, not the published {size}; nothing was kept")
    if sha256 is not None and digest != sha256.lower():
        raise DownloadError(f"{where}: SHA-256 {digest} differs from the published {sha256.lower()}; nothing was "
                            "kept")
    if sha256 is None and sha256_prefix is not None and not digest.startswith(sha256_prefix.lower()):
        raise DownloadError(f"{where}: SHA-256 {digest} does not begin with {sha256_prefix.lower()}, as its name "
                            "says it must; nothing was kept")
