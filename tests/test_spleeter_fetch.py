"""Spleeter's GitHub releases through a loopback mirror: fetched, checked as Spleeter checks them (the release's
checksum.json, and the pinned 4stems sum), unpacked safely, converted and cached; every failure one line, nothing
left in the cache. And `tfsep models`, which lists every name without TensorFlow."""

import hashlib
import io
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from conftest import HTML, LoopbackHandler, LoopbackServer, publish, write_spleeter_checkpoint

from tfsep import formats, providers
from tfsep.providers import PretrainedError, spleeter

RELEASE = "deezer/spleeter/releases/download/v1.4.0"  # the path of spleeter.RELEASES, served by the mirror


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(folder, variables): a random 4-instrument checkpoint in Spleeter's layout, with the files Deezer's archives
    carry beside it (model.meta, a placeholder here: the converter never reads it, and .probe)."""
    folder = tmp_path_factory.mktemp("release") / "4stems"
    variables = write_spleeter_checkpoint(folder, spleeter.CONFIGS["4stems"]["instrument_list"], seed=4)
    (folder / "model.meta").write_bytes(b"a TF1 MetaGraphDef, unread")
    (folder / ".probe").write_text("OK")
    return folder, variables


def archive(members):
    """The bytes of a .tar.gz holding `members`: {name in the archive: bytes, or a path to add}."""
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w:gz", compresslevel=1) as tar:
        for name, content in members.items():
            if isinstance(content, bytes):
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.add(content, arcname=name)
    return body.getvalue()


def release_of(folder, prefix=""):
    """Deezer's archive of the checkpoint folder `folder`: its files at the top (as Deezer's are), or in `prefix`."""
    return archive({prefix + path.name: path for path in sorted(folder.iterdir())})


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TFSEP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def mirror(loopback, monkeypatch):
    """The loopback server, as TFSEP_MIRROR."""
    monkeypatch.setenv("TFSEP_MIRROR", loopback.mirror)
    return loopback


@pytest.fixture
def offline(monkeypatch):
    """TFSEP_MIRROR at a loopback port where nothing listens: what no network gives. Returns that address."""
    server = LoopbackServer(("127.0.0.1", 0), LoopbackHandler)
    address = f"http://127.0.0.1:{server.server_address[1]}"
    server.server_close()
    monkeypatch.setenv("TFSEP_MIRROR", address)
    return address


def release(server, name, body, listed=None):
    """Serve `body` as `name`.tar.gz, and a checksum.json that lists its SHA-256 (or `listed`) and 2stems'."""
    digest = publish(server.folder, f"{RELEASE}/{name}.tar.gz", body)
    index = f'{{"2stems": "{"a" * 64}", "{name}": "{listed or digest}"}}'
    publish(server.folder, f"{RELEASE}/checksum.json", index.encode())
    return digest


def assert_nothing_cached(home):
    assert not (home / "models").exists() or list((home / "models").iterdir()) == []


def weight_digests(arrays):
    return sorted(f"{array.shape} {hashlib.sha256(np.asarray(array, np.float32).tobytes()).hexdigest()}"
                  for array in arrays)


@pytest.mark.slow
def test_a_first_use_fetches_verifies_converts_and_caches_and_the_next_stays_offline(checkpoint, home, mirror,
                                                                                       monkeypatch):
    from tfsep.models import load_model

    folder, variables = checkpoint
    digest = release(mirror, "4stems", release_of(folder))
    monkeypatch.setitem(spleeter.PINNED, "4stems", digest)  # Deezer's real sum cannot match a test archive
    said = []
    target = providers.resolve("spleeter:4stems", log=said.append)

    assert target == home / "models" / "spleeter-4stems.keras"
    assert list(target.parent.iterdir()) == [target] and not (home / "downloads").exists()
    assert len(said) == 1
    for words in (f"{spleeter.RELEASES}/4stems.tar.gz", f"through the mirror {mirror.mirror}/{RELEASE}/4stems.tar.gz",
                  "(Deezer, MIT)", "checksum.json", str(target)):
        assert words in said[0], said[0]
    model = load_model(target)
    assert model.sources == ("vocals", "drums", "bass", "other")
    assert model.get_config()["network"]["conv_activation"] == "elu"
    unused = {f"batch_normalization_{12 * i + 5}" for i in range(4)}  # after the last encoder convolution
    published = [value for name, value in variables.items()
                 if name != "global_step" and name.split("/")[0] not in unused]
    weights = [weight for layer in model.layers if layer.name != "input_standardize" for weight in layer.get_weights()]
    assert weight_digests(weights) == weight_digests(published)

    mirror.shutdown()
    again = []
    assert providers.resolve("spleeter:4stems", log=again.append) == target and again == []
    assert ("spleeter:4stems", True) in [(name, cached) for name, _, cached in providers.catalog()]


@pytest.mark.slow
def test_an_archive_placed_by_hand_is_verified_and_used_without_network(checkpoint, home, offline, monkeypatch):
    folder, _ = checkpoint
    by_hand = home / "downloads" / "4stems.tar.gz"
    by_hand.parent.mkdir(parents=True)
    by_hand.write_bytes(release_of(folder, prefix="4stems/"))  # a folder of the files is taken too
    monkeypatch.setitem(spleeter.PINNED, "4stems", hashlib.sha256(by_hand.read_bytes()).hexdigest())
    said = []
    target = providers.resolve("spleeter:4stems", log=said.append)
    assert formats.describe(target)["sources"] == ["vocals", "drums", "bass", "other"]
    assert len(said) == 1 and str(by_hand) in said[0] and "placed by hand" in said[0]
    assert by_hand.is_file()  # the user's copy stays


def test_an_archive_placed_by_hand_that_differs_from_the_pinned_sum_is_refused(home, offline):
    by_hand = home / "downloads" / "4stems.tar.gz"
    by_hand.parent.mkdir(parents=True)
    by_hand.write_bytes(archive({"model.index": b"not Deezer's"}))
    with pytest.raises(PretrainedError) as error:
        providers.resolve("spleeter:4stems", log=lambda message: None)
    assert_one_line(error, str(by_hand), f"differs from {spleeter.PINNED['4stems']}", "nothing was converted")
    assert_nothing_cached(home)


def test_an_unpinned_archive_placed_by_hand_is_checked_against_the_checksum_json_beside_it(home, offline):
    downloads = home / "downloads"
    downloads.mkdir(parents=True)
    body = archive({"README": b"no checkpoint here"})
    (downloads / "5stems.tar.gz").write_bytes(body)
    (downloads / "checksum.json").write_text(f'{{"5stems": "{"0" * 64}"}}')
    with pytest.raises(PretrainedError) as error:
        providers.resolve("spleeter:5stems", log=lambda message: None)
    assert_one_line(error, f"differs from {'0' * 64}")
    (downloads / "checksum.json").write_text(f'{{"5stems": "{hashlib.sha256(body).hexdigest()}"}}')
    with pytest.raises(PretrainedError) as error:  # verified: the next check is the archive's contents
        providers.resolve("spleeter:5stems", log=lambda message: None)
    assert_one_line(error, "holds 0 checkpoint indexes")
    assert_nothing_cached(home)


@pytest.mark.parametrize("name, hint", [
    ("4stems", "4stems.tar.gz by hand and put it at {downloads}/4stems.tar.gz"),
    ("5stems", "5stems.tar.gz by hand and put it at {downloads}/5stems.tar.gz, with {releases}/checksum.json "
               "beside it"),
])
def test_no_network_and_no_copy_says_where_to_put_the_archive(home, offline, name, hint):
    said = []
    with pytest.raises(PretrainedError) as error:
        providers.resolve(f"spleeter:{name}", log=said.append)
    assert_one_line(error, f"cannot reach {offline}/{RELEASE}/checksum.json", "with no network",
                    hint.format(downloads=home / "downloads", releases=spleeter.RELEASES))
    assert len(said) == 1 and f"{spleeter.RELEASES}/{name}.tar.gz" in said[0]
    assert_nothing_cached(home)


def test_a_checksum_json_that_disagrees_with_the_pinned_sum_is_refused(home, mirror):
    release(mirror, "4stems", archive({"model.index": b"another file"}))
    with pytest.raises(PretrainedError) as error:
        providers.resolve("spleeter:4stems", log=lambda message: None)
    assert_one_line(error, f"{RELEASE}/checksum.json", f"but Deezer's published 4stems.tar.gz has "
                    f"{spleeter.PINNED['4stems']}", "refusing")
    assert_nothing_cached(home)


def test_an_archive_whose_sum_differs_from_the_checksum_json_is_refused(home, mirror):
    release(mirror, "5stems", archive({"model.index": b"x"}), listed="0" * 64)
    with pytest.raises(PretrainedError) as error:
        providers.resolve("spleeter:5stems", log=lambda message: None)
    assert_one_line(error, f"{spleeter.RELEASES}/5stems.tar.gz", f"differs from the published {'0' * 64}",
                    "nothing was kept")
    assert_nothing_cached(home)


@pytest.mark.parametrize("failure, words", [
    ("truncated", "the connection ended after"),
    ("missing", "HTTP 404"),
    ("page", "HTML page"),
    ("no entry", "lists no SHA-256 for 5stems"),
])
def test_a_download_that_fails_is_one_line_and_leaves_nothing(home, mirror, failure, words):
    body = archive({"model.index": b"x" * 100_000})
    release(mirror, "5stems", body)
    path = f"{RELEASE}/5stems.tar.gz"
    if failure == "truncated":
        mirror.truncated.add(f"/{path}")
    elif failure == "missing":
        (mirror.folder / path).unlink()
    elif failure == "page":
        (mirror.folder / path).write_bytes(HTML)
    else:
        publish(mirror.folder, f"{RELEASE}/checksum.json", b'{"4stems": "' + b"a" * 64 + b'"}')
    with pytest.raises(PretrainedError) as error:
        providers.resolve("spleeter:5stems", log=lambda message: None)
    assert_one_line(error, words)
    assert_nothing_cached(home)


@pytest.mark.parametrize("member, words", [
    ("../escaped", "'../escaped' would unpack outside its folder"),
    ("/tmp/absolute", "'/tmp/absolute' would unpack outside its folder"),
    ("link", "'link' is a link"),
    ("fifo", "'fifo' is a device or special file"),
])
def test_an_archive_with_a_member_outside_its_folder_or_not_a_file_is_refused(home, mirror, tmp_path, member,
                                                                               words):
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("model.index"), io.BytesIO())
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif member == "fifo":
            info.type = tarfile.FIFOTYPE
        else:
            info.size = 6
        tar.addfile(info, io.BytesIO(b"escape"))
    release(mirror, "5stems", body.getvalue())
    with pytest.raises(PretrainedError) as error:
        providers.resolve("spleeter:5stems", log=lambda message: None)
    assert_one_line(error, "5stems.tar.gz: member", words, "refusing the archive")
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
    assert_nothing_cached(home)


def test_the_command_line_says_one_line_more_than_what_it_fetches(home, offline, tmp_path):
    command = [sys.executable, "-m", "tfsep.cli", "separate", str(tmp_path / "x.wav"), "--model", "spleeter:5stems"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    said, error = result.stderr.splitlines()
    assert said.startswith("tfsep: fetching Spleeter's 5stems weights (Deezer, MIT)")
    assert error.startswith("tfsep: error: cannot reach") and "5stems.tar.gz by hand" in error


def test_tfsep_models_lists_every_name_without_tensorflow(home):
    (home / "models").mkdir(parents=True)
    (home / "models" / "spleeter-5stems.keras").write_bytes(b"converted earlier")
    script = "import sys\nfrom tfsep.cli import main\ncode = main(['models'])\nprint('tensorflow' in sys.modules, code)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert lines[-1] == "False 0", result.stdout + result.stderr
    rows = {line.split()[0]: line for line in lines[1:-2]}
    assert {"band", *(f"spleeter:{name}" for name in spleeter.NAMES)} <= set(rows)
    assert "6.86 / 6.71 / 5.51 / 4.55" in rows["spleeter:4stems"] and "MIT (Deezer)" in rows["spleeter:4stems"]
    assert rows["spleeter:4stems"].endswith("no") and rows["spleeter:5stems"].endswith("yes")
    assert "vocals, piano, drums, bass, other" in rows["spleeter:5stems"] and "185 MB" in rows["spleeter:5stems"]


def test_the_catalog_s_band_row_has_the_shipped_model_s_sources():
    band = dict((name, card) for name, card, _ in providers.catalog())["band"]
    assert list(band.sources) == formats.describe(providers.shipped_model())["sources"]


def assert_one_line(error, *words):
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
