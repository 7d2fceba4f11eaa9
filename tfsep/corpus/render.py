"""A data set: the songs of each split and track, what each split may play, and every track rendered
(`tracks`), resumably and in parallel, into OUT/{train,valid,test}/<track>/ with OUT/render.json and OUT/render.log.

Splits are fixed by names (songs, groove files) rather than by the seed; the seed picks each split's
songs and each track's song source, tempo, transposition, instruments, voice and production.
"""

import importlib.util
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tfsep import names
from tfsep.corpus import singing, songs, timbres
from tfsep.corpus.errors import RenderError, SongError
from tfsep.corpus.tools import SAMPLE_RATE, find_tool
from tfsep.corpus.tracks import render_track, write_track

SPLITS = names.SPLITS
MAX_SECONDS = 45.0
ATTEMPTS = 6  # songs tried per track before the render stops
# Share of each song source per split, for the band layout.
SOURCE_SHARES = {"train": {"chorale": 0.3, "folk": 0.45, "freedoom": 0.25},
                 "valid": {"chorale": 0.3, "folk": 0.35, "freedoom": 0.35},
                 "test": {"chorale": 0.3, "folk": 0.35, "freedoom": 0.35}}
HELD_OUT_SOURCE = "freedoom1"  # freedoom1's songs: valid (even lumps) and test (odd lumps) only


# What each layout plays, as Debian packages, and how to tell that one is installed.
_INSTALLED = {
    "fluidsynth": lambda: shutil.which("fluidsynth") is not None,
    **{package: (lambda file=file: timbres.find_file(file) is not None)
       for file, _, package in timbres.SOUNDFONTS.values()},
    "avldrums.lv2-soundfont": lambda: all(timbres.find_file(file) is not None
                                          for file, _ in timbres.SAMPLED_KITS.values() if file.endswith(".sf2")),
    "hydrogen-drumkits": lambda: all((Path(timbres.HYDROGEN_FOLDER) / file / "drumkit.xml").is_file()
                                     for file, _ in timbres.SAMPLED_KITS.values() if not file.endswith(".sf2")),
    "freedoom": lambda: all(Path(wad).is_file() for wad in songs.FREEDOOM_WADS),
    "mma": lambda: shutil.which("mma") is not None,
    "espeak-ng": lambda: shutil.which("espeak-ng") is not None,
}
PACKAGES = {"band": tuple(_INSTALLED), "satb": ("fluidsynth", *(p for _, _, p in timbres.SOUNDFONTS.values()))}


def require_packages(layout):
    """Raise RenderError naming, in one line, every Debian package (and the Python extra) that `layout` needs and
    this machine lacks, with the command that installs them."""
    missing = [package for package in PACKAGES[layout] if not _INSTALLED[package]()]
    commands = [f"apt-get install -y {' '.join(missing)}"] if missing else []
    if importlib.util.find_spec("music21") is None or importlib.util.find_spec("mido") is None:
        missing.append("music21 and mido (Python)")
        commands.append("pip install 'tfsep[render]'")
    if missing:
        raise RenderError(f"rendering needs {', '.join(missing)}, not installed here: {' && '.join(commands)} "
                          "(as root on Debian or Ubuntu)")


def song_split(ref):
    """The split a song belongs to: fixed by its name, not by the seed."""
    if ref.source == "freedoom":
        if ref.name.startswith(HELD_OUT_SOURCE + "_"):
            return ("valid", "test")[ref.index % 2]
        return "train"
    return hashed_split(ref.name)


def groove_split(groove):
    """The split an mma groove belongs to: fixed by its library file, so a file's grooves stay together."""
    return hashed_split(groove[2])


def hashed_split(name):
    """valid for 10 % of names, test for 10 %, train for the rest, by a hash of the name."""
    fraction = songs.stable_fraction(name)
    return "valid" if fraction < 0.1 else "test" if fraction < 0.2 else "train"


def split_sizes(tracks):
    """(train, valid, test) counts: 10 % each for valid and test, at least one each from 3 tracks on."""
    if tracks < 3:
        return tracks - (tracks == 2), 0, int(tracks == 2)
    held_out = max(1, round(0.1 * tracks))
    return tracks - 2 * held_out, held_out, held_out


def catalog(layout):
    """{split: {source: [SongRef]}} of every song installed for `layout`."""
    refs = songs.chorale_refs()
    if layout == "band":
        refs += songs.folk_refs() + songs.freedoom_refs()
    table = {split: {} for split in SPLITS}
    for ref in refs:
        table[song_split(ref)].setdefault(ref.source, []).append(ref)
    return table


def plan(layout, tracks, seed):
    """[(split, index, [SongRef candidates])] for every track: distinct songs within each split and source
    while they last, candidates in the order they are tried should a song fail."""
    table = catalog(layout)
    train, valid, test = split_sizes(tracks)
    splits = ["test"] * test + ["valid"] * valid + ["train"] * train
    orders = {}
    for split, sources in table.items():
        for source, refs in sources.items():
            stream = np.random.default_rng([seed, len(source)])  # one stream per source (its name's length, 4 to 8)
            orders[split, source] = [refs[i] for i in stream.permutation(len(refs))]
    used, jobs = {}, []
    for index, split in enumerate(splits):
        available = [s for s in SOURCE_SHARES[split] if table[split].get(s)] if layout == "band" else ["chorale"]
        if not available:
            raise RenderError(f"no songs for the {split} split: install music21 (pip install tfsep[render]) "
                              "and freedoom")
        shares = np.array([SOURCE_SHARES[split].get(s, 1.0) for s in available])
        source = available[np.random.default_rng([seed, index, 1]).choice(len(available), p=shares / shares.sum())]
        order = orders[split, source]
        start = used.get((split, source), 0)
        used[split, source] = start + 1
        jobs.append((split, index, [order[(start + k * 7919) % len(order)] for k in range(ATTEMPTS)]))
    return jobs


class Instruments:
    """What each split may play: soundfonts, drum kits, espeak voices and mma grooves.

    Every tool and package the layout needs must be installed (`band`: FluidSynth, the
    soundfonts of every split, espeak-ng, mma and freedoom; `satb`: FluidSynth and the
    soundfonts), or RenderError says what to install.
    """

    def __init__(self, layout="band"):
        require_packages(layout)
        self.fluidsynth = find_tool("fluidsynth", "FluidSynth")
        fonts = timbres.soundfonts()
        timbres.require_splits(fonts)
        self.fonts = {split: [f for f in fonts if f.split == split] for split in SPLITS}
        kits = timbres.drum_kits(fonts)
        self.kits = {split: [k for k in kits if k.split == split] for split in SPLITS}
        self.singers, grooves = {split: [] for split in SPLITS}, []
        if layout == "band":
            self.singers = {split: singing.singers(split) for split in SPLITS}
            grooves = songs.grooves()
            if not songs.freedoom_refs():
                raise RenderError("freedoom's songs are not installed: install them with `apt-get install freedoom`")
        self.grooves = {split: [g for g in grooves if groove_split(g) == split] for split in SPLITS}
        self.hydrogen = {}
        self.lock = threading.Lock()

    def settings(self):
        return {split: {"soundfonts": [f.name for f in self.fonts[split]],
                        "drum_kits": [k.name for k in self.kits[split]],
                        "singers": self.singers[split], "grooves": len(self.grooves[split])} for split in SPLITS}

    def hydrogen_kit(self, path):
        with self.lock:
            if path not in self.hydrogen:
                self.hydrogen[path] = timbres.HydrogenKit(path)
            return self.hydrogen[path]


def render_dataset(out, layout="band", tracks=10, seed=0, jobs=2, progress=True):
    """Render `tracks` tracks of `layout` into `out`; tracks already rendered with the same settings are kept.

    Returns the track folders, in track order. Songs that fail to parse or lack a stem are logged
    in OUT/render.log, and the track takes the next song of its split.
    """
    if layout not in songs.LAYOUTS:
        raise RenderError(f"unknown layout {layout!r}; choose one of {sorted(songs.LAYOUTS)}")
    if tracks < 1:
        raise RenderError(f"--tracks must be at least 1, got {tracks}")
    instruments = Instruments(layout)
    jobs_list = plan(layout, tracks, seed)
    out = Path(out)
    settings = {"layout": layout, "tracks": tracks, "seed": seed, "stems": list(songs.LAYOUTS[layout]),
                "sample_rate": SAMPLE_RATE, "splits": instruments.settings()}
    manifest = out / "render.json"
    if manifest.is_file() and json.loads(manifest.read_text()) != settings:
        raise RenderError(f"{out} holds a render with other settings ({manifest}); choose another folder")
    if not manifest.is_file() and out.is_dir() and any(out.iterdir()):
        raise RenderError(f"{out} is not empty and holds no tfsep render; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(settings, indent=2))
    log, lock, skipped = out / "render.log", threading.Lock(), []

    def render_one(job):
        split, index, candidates = job
        for attempt, ref in enumerate(candidates):
            folder = out / split / f"{index:04d}_{ref.name}"
            if (folder / "mixture.wav").is_file():
                return folder
            rng = np.random.default_rng([seed, index, attempt])
            try:
                song = songs.load(ref, rng, instruments.grooves[split], MAX_SECONDS, layout)
                write_track(folder, *render_track(song, layout, split, instruments, rng))
                return folder
            except SongError as error:
                with lock:
                    skipped.append(ref.name)
                    with log.open("a") as file:
                        file.write(f"skipped {ref.name} (track {index}, {split}): {error}\n")
        raise RenderError(f"track {index}: {ATTEMPTS} songs in a row failed; see {log}")

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = pool.map(render_one, jobs_list)
        folders = list(tqdm(results, total=len(jobs_list), desc=f"rendering {layout}", unit="track",
                            disable=not progress))
    if skipped:
        print(f"skipped {len(skipped)} songs that failed to parse or lacked a stem (see {log})")
    return folders
