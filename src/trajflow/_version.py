"""The package version, in one place (read by hatch and by whoever needs it, without importing
the package face)."""

__version__ = "0.1.0"
