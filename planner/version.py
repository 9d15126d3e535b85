"""The tool's version (its own module so that nothing below the package root imports the root)."""
__version__ = "0.2.0"
