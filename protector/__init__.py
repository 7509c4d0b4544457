"""protector: protect photos against automatic scene recognition."""
__version__ = "0.1.0"
