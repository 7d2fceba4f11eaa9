"""tfsep.providers.download against a loopback HTTP server: mirrors, verification, and failures that leave nothing."""

import hashlib
import json
import os

import pytest
from conftest import HTML, LoopbackHandler, LoopbackServer, publish

from tfsep.providers import PretrainedError, download
from tfsep.providers.download import DownloadError, checksums, fetch, publisher_url, sha256_prefix_of

ZENODO = "https://zenodo.org/records/3370489/files"
RELEASES = "https://github.com/deezer/spleeter/releases/download/v1.4.0"
@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TFSEP_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "downloads"


def weights(folder):
    """(name, body, sha256) of an Open-Unmix-style file `vocals-<first 8 hex digits of its SHA-256>.pth`, served
    at Zenodo's path."""
    body = os.urandom(300_000)
    digest = hashlib.sha256(body).hexdigest()
    name = f"vocals-{digest[:8]}.pth"
    publish(folder, f"records/3370489/files/{name}", body)
    return name, body, digest


def assert_one_line(error, *words):
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_publisher_url_without_a_mirror_is_the_url(monkeypatch):
    monkeypatch.delenv("TFSEP_MIRROR", raising=False)
    assert publisher_url(f"{ZENODO}/vocals-b62c91ce.pth") == f"{ZENODO}/vocals-b62c91ce.pth"


def test_publisher_url_takes_the_mirror_s_scheme_and_host_and_keeps_the_path(monkeypatch):
    monkeypatch.setenv("TFSEP_MIRROR", "http://127.0.0.1:8765")
    assert publisher_url(f"{ZENODO}/vocals-b62c91ce.pth") == \
        "http://127.0.0.1:8765/records/3370489/files/vocals-b62c91ce.pth"
    monkeypatch.setenv("TFSEP_MIRROR", "https://mirror.example/")
    assert publisher_url(f"{RELEASES}/checksum.json?x=1") == \
        "https://mirror.example/deezer/spleeter/releases/download/v1.4.0/checksum.json?x=1"


@pytest.mark.parametrize("mirror", ["127.0.0.1:8765", "localhost:8765", "ftp://host", "http://host:port",
                                    "http://host:99999", "http://host/prefix", "http://"])
def test_a_malformed_mirror_is_one_clear_error(monkeypatch, cache, mirror):
    monkeypatch.setenv("TFSEP_MIRROR", mirror)
    with pytest.raises(DownloadError) as error:
        fetch(f"{ZENODO}/vocals-b62c91ce.pth", cache / "vocals-b62c91ce.pth")
    assert_one_line(error, "TFSEP_MIRROR", repr(mirror), "http://127.0.0.1:8765")
    assert not cache.exists()


def test_sha256_prefix_of_reads_torch_hub_s_names():
    assert sha256_prefix_of("vocals-b62c91ce.pth") == "b62c91ce"
    assert sha256_prefix_of(f"{ZENODO}/other-b52fbbf7.pth") == "b52fbbf7"
    assert sha256_prefix_of("bass-8d85a5bd") == "8d85a5bd"
    assert sha256_prefix_of("umx.v1-2ca1ce51.tar.gz") == "2ca1ce51"
    for name in ("4stems.tar.gz", "model-abc.pth", "vocals-b62c91cz.pth", "vocals_b62c91ce.pth", "b62c91ce.pth"):
        assert sha256_prefix_of(name) is None, name


def test_a_first_fetch_through_the_mirror_downloads_and_verifies(served, cache, monkeypatch, capsys):
    folder, mirror = served
    monkeypatch.setenv("TFSEP_MIRROR", mirror)
    name, body, digest = weights(folder)
    said = []
    target = fetch(f"{ZENODO}/{name}", cache / name, sha256_prefix=sha256_prefix_of(name), size=len(body),
                   log=said.append)
    assert target == cache / name and target.read_bytes() == body
    assert os.listdir(cache) == [name]  # no temporaries
    assert said == [f"downloading {mirror}/records/3370489/files/{name} (mirror of {ZENODO}/{name}) into {target}"]
    assert capsys.readouterr().err == ""  # stderr is no terminal: no progress bar

    again = cache / "pinned.pth"
    assert fetch(f"{ZENODO}/{name}", again, sha256=digest.upper(), progress=False).read_bytes() == body


@pytest.mark.parametrize("pin", ["sha256", "sha256_prefix", "size"])
def test_a_wrong_hash_or_size_leaves_nothing(served, cache, monkeypatch, pin):
    folder, mirror = served
    monkeypatch.setenv("TFSEP_MIRROR", mirror)
    name, body, digest = weights(folder)
    wrong = {"sha256": "0" * 64, "sha256_prefix": "00000000", "size": len(body) + 1}[pin]
    with pytest.raises(DownloadError) as error:
        fetch(f"{ZENODO}/{name}", cache / name, **{pin: wrong})
    assert_one_line(error, f"{ZENODO}/{name}", str(wrong), "nothing was kept")
    assert os.listdir(cache) == []


def test_a_failed_fetch_keeps_an_existing_file(served, cache, monkeypatch):
    folder, mirror = served
    monkeypatch.setenv("TFSEP_MIRROR", mirror)
    name, _, _ = weights(folder)
    cache.mkdir(parents=True)
    (cache / name).write_bytes(b"the old file")
    with pytest.raises(DownloadError):
        fetch(f"{ZENODO}/{name}", cache / name, sha256="0" * 64)
    assert (cache / name).read_bytes() == b"the old file" and os.listdir(cache) == [name]


def test_a_truncated_body_is_refused(served, cache):
    folder, mirror = served
    name, body, digest = weights(folder)
    url = f"{mirror}/truncated/records/3370489/files/{name}"
    with pytest.raises(DownloadError) as error:
        fetch(url, cache / name)  # no hash pinned: the Content-Length alone catches it
    assert_one_line(error, url, f"after {len(body) // 2} of {len(body)} bytes")
    assert os.listdir(cache) == []


@pytest.mark.parametrize("code", [404, 500])
def test_an_http_error_names_the_url_and_the_hand_hint(served, cache, code):
    _, mirror = served
    url = f"{mirror}/status/{code}"
    with pytest.raises(DownloadError) as error:
        fetch(url, cache / "vocals-b62c91ce.pth", hand_hint="put vocals-b62c91ce.pth into ~/downloads")
    assert_one_line(error, url, f"HTTP {code}", "put vocals-b62c91ce.pth into ~/downloads")
    assert isinstance(error.value, PretrainedError)  # the CLI turns these into one line
    assert os.listdir(cache) == []


@pytest.mark.parametrize("path", ["page", "records/3370489/files/vocals-b62c91ce.pth"])
def test_an_html_page_with_status_200_is_refused(served, cache, monkeypatch, path):
    """Served as text/html, or as a file whose body is a page."""
    folder, mirror = served
    publish(folder, "records/3370489/files/vocals-b62c91ce.pth", b"  " + HTML)
    url = f"{mirror}/{path}"
    with pytest.raises(DownloadError) as error:
        fetch(url, cache / "vocals-b62c91ce.pth", sha256_prefix="b62c91ce")
    assert_one_line(error, url, "HTML page")
    assert os.listdir(cache) == []


def test_a_stopped_server_says_where_to_put_the_file(served, cache, monkeypatch):
    _, mirror = served
    server = LoopbackServer(("127.0.0.1", 0), LoopbackHandler)
    stopped = f"http://127.0.0.1:{server.server_address[1]}"
    server.server_close()  # nothing listens there now: connection refused
    monkeypatch.setenv("TFSEP_MIRROR", stopped)
    target = cache / "vocals-b62c91ce.pth"
    with pytest.raises(DownloadError) as error:
        fetch(f"{ZENODO}/vocals-b62c91ce.pth", target, sha256_prefix="b62c91ce")
    assert_one_line(error, f"{stopped}/records/3370489/files/vocals-b62c91ce.pth", "Connection refused",
                    "with no network", f"download {ZENODO}/vocals-b62c91ce.pth by hand and put it at {target}")
    assert not target.exists() and os.listdir(cache) == []


def test_a_silent_server_times_out(served, cache, monkeypatch):
    _, mirror = served
    monkeypatch.setattr(download, "TIMEOUT", 0.2)
    with pytest.raises(DownloadError) as error:
        fetch(f"{mirror}/slow", cache / "slow.pth", hand_hint="put it into ~/downloads")
    assert_one_line(error, f"{mirror}/slow", "timed out", "put it into ~/downloads")
    assert os.listdir(cache) == []


def test_checksums_reads_a_release_s_index(served, monkeypatch):
    folder, mirror = served
    monkeypatch.setenv("TFSEP_MIRROR", mirror)
    index = {"2stems": "a" * 64, "4stems": "3ADB4A50AD4EB18C7C4D65FCF4CF2367A07D48408A5EB7D03CD20067429DFAA8"}
    publish(folder, "deezer/spleeter/releases/download/v1.4.0/checksum.json", json.dumps(index).encode())
    assert checksums(f"{RELEASES}/checksum.json") == {
        "2stems": "a" * 64, "4stems": "3adb4a50ad4eb18c7c4d65fcf4cf2367a07d48408a5eb7d03cd20067429dfaa8"}


@pytest.mark.parametrize("body", [b"not json", b'["2stems"]', b'{"2stems": "not a digest"}', b"\xff\xfe"])
def test_checksums_refuses_what_is_not_an_index(served, monkeypatch, body):
    folder, mirror = served
    monkeypatch.setenv("TFSEP_MIRROR", mirror)
    publish(folder, "deezer/spleeter/releases/download/v1.4.0/checksum.json", body)
    with pytest.raises(DownloadError) as error:
        checksums(f"{RELEASES}/checksum.json")
    assert_one_line(error, f"{RELEASES}/checksum.json", "not a checksum index")
