"""The corpus's one error type, and the kind of it that only ends one song."""


class RenderError(Exception):
    """A missing tool or input, or a render that cannot go on; the message says what to install or change."""


class SongError(RenderError):
    """A song that cannot be parsed or lacks a stem: the renderer logs it and takes the next song instead."""
