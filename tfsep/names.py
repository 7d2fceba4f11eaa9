"""The names that tfsep's options accept, in a module that imports nothing, so that the CLI offers them as
choices (and `--help` answers) without loading TensorFlow. The modules that act on them take them from here."""

SOURCES = ("vocals", "drums", "bass", "other")  # the default stems
SPLITS = ("train", "valid", "test")  # the subsets of a data set
LAYOUTS = ("band", "satb")  # render-dataset's stem layouts: vocals/drums/bass/other, or the four chorale voices
ORACLES = ("irm", "ibm", "wiener", "mixture")  # oracle separations (`oracles.oracle_separate`)
BIT_DEPTHS = ("16", "24", "float")  # the sample formats that stems are written in
EXPORT_FORMATS = ("savedmodel", "tflite")
QUANTIZATIONS = ("none", "float16", "dynamic-int8")  # TFLite weight storage
CHECKPOINT_KINDS = ("spleeter",)  # systems whose checkpoints `tfsep convert` reads
