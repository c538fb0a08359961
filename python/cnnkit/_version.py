"""The package version, in a module of its own so that whatever records it (model files, the
command line) can import it without importing the whole package."""

__version__ = "0.1.0"
