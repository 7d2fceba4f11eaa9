"""What a rendered corpus holds, from its tracks' manifests: tracks and hours per split and source,
and the soundfonts, drum kits and voices each split uses.

    python tools/corpus_summary.py data/band2

Prints markdown tables, for model cards.
"""

import argparse
import collections
import json
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    args = parser.parse_args()
    tracks = collections.Counter()
    seconds = collections.Counter()
    played = collections.defaultdict(collections.Counter)
    vocals = collections.defaultdict(collections.Counter)
    limited = collections.Counter()
    for manifest_path in sorted(args.root.glob("*/*/manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        split, source = manifest["split"], manifest["source"]
        key = (split, source if not manifest["song"].startswith("freedoom1") else "freedoom1")
        tracks[key] += 1
        seconds[key] += manifest["seconds"]
        limited[split] += "limiter" in manifest["mix"]
        for role, stem in manifest["stems"].items():
            for kind in ("soundfont", "kit", "singer"):
                if kind in stem:
                    played[split][stem[kind].split(":")[0] if kind == "kit" and ":" in stem[kind] else stem[kind]] += 1
            if role == "vocals":
                vocals[split]["sung (espeak-ng)" if "singer" in stem else "voice patch"] += 1
    splits = sorted({s for s, _ in tracks}, key=["train", "valid", "test"].index)
    print("| split | source | tracks | hours |\n|---|---|---|---|")
    for split in splits:
        for (s, source), count in sorted(tracks.items()):
            if s == split:
                print(f"| {split} | {source} | {count} | {seconds[s, source] / 3600:.2f} |")
        total = sum(v for (s, _), v in tracks.items() if s == split)
        hours = sum(v for (s, _), v in seconds.items() if s == split) / 3600
        print(f"| {split} | **all** | {total} | {hours:.2f} |")
    print("\n| split | instruments (stems played) | vocals | mixtures limited |\n|---|---|---|---|")
    for split in splits:
        names = ", ".join(f"{name} {count}" for name, count in played[split].most_common())
        voices = ", ".join(f"{kind} {count}" for kind, count in vocals[split].most_common())
        print(f"| {split} | {names} | {voices} | {limited[split]} |")


if __name__ == "__main__":
    main()
