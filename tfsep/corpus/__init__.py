"""The corpus renderer: multitrack data sets made offline from songs (`songs`), instruments (`timbres`),
voices (`singing`) and mix production (`production`), a track at a time (`tracks`) and a set at a time
(`render`), with the programs of `tools`. Every error is a `RenderError`; a `SongError` only skips a song.

Layouts:

- `band`: vocals, drums, bass and other, from all three song sources (chorales, folk tunes over
  mma grooves, freedoom's General MIDI songs);
- `satb`: soprano, alto, tenor and bass of the chorales.

Generalisation is measured honestly: validation and test hold out whole songs, the soundfonts,
drum kits and espeak voices of their own split (`timbres`, `singing`), a share of mma's groove
files, and one whole song source, freedoom1's songs, which only validation (even lumps) and test
(odd lumps) use. Every track draws its song, tempo, transposition, instruments, voice and
production from a generator seeded by (seed, track index), so a render is deterministic and does
not depend on `jobs`. Stems are written as 16-bit wav and the mixture as 24-bit wav holding their
exact sum, so mixture == sum of stems holds to the last bit once read back. Each track folder has
a `manifest.json` of what made it, and appears whole or not at all.

Output: OUT/{train,valid,test}/<track>/{mixture,<stem>...}.wav (MUSDB18-HQ's layout), OUT/render.json
(settings) and OUT/render.log (one line per skipped song).
"""

from tfsep.corpus.errors import RenderError, SongError
from tfsep.corpus.render import render_dataset
from tfsep.corpus.songs import LAYOUTS
from tfsep.corpus.tools import SAMPLE_RATE

__all__ = ["LAYOUTS", "SAMPLE_RATE", "RenderError", "SongError", "render_dataset"]
