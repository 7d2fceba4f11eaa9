"""The names that tfsep's options accept, and their defaults, in a module that imports nothing, so that the CLI
offers them as choices (and `--help` answers) without loading TensorFlow. The modules that act on them take them
from here."""

SOURCES = ("vocals", "drums", "bass", "other")  # the default stems
SPLITS = ("train", "valid", "test")  # the subsets of a data set
LAYOUTS = ("band", "satb")  # render-dataset's stem layouts: vocals/drums/bass/other, or the four chorale voices
ORACLES = ("irm", "ibm", "wiener", "mixture")  # oracle separations (`oracles.oracle_separate`)
BIT_DEPTHS = ("16", "24", "32", "float")  # the sample formats that stems are written in; 32 is float
AUDIO_FORMATS = ("wav", "flac", "mp3")  # the file formats that stems are written in
QUANTIZATIONS = ("none", "float16", "dynamic-int8")  # TFLite weight storage

# Separation chunks (`chunking.chunk_plan`): 5 s, crossfaded over 0.25 s. A chunk's spectra then stay closer to the
# CPU's caches (the shipped model took 21.6 ms per second of audio in 2 s chunks, 26.4 in 5 s, 28.7 in 7 s) and 5 %
# of the audio is recomputed (7 s and 1 s: 17 %); Separator.separate of 60 s took 1.67 s with 5 s and 0.5 s, 1.53 s
# with 5 s and 0.25 s (7 s and 1 s: 2.40 s). The model's mean global SDR on 30 held-out test tracks is the same
# (2.481 dB with 7 s and 1 s, 2.488 with 5 s and 0.5 s, 2.482 with 5 s and 0.25 s, 2.479 in one whole-track call).
CHUNK_SECONDS = 5.0
OVERLAP_SECONDS = 0.25
