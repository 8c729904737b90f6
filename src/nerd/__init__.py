"""nerd: your personal nerd that takes care of running scientific compute."""

__version__ = "0.1.0"
