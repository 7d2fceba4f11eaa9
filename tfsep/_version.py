"""The package version, for the package root and for what exports record about themselves."""

__version__ = "0.1.0"
