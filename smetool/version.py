"""The installed version of smetool, from the package metadata (the one place it is read)."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("smetool")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
