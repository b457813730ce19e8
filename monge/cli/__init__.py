"""The ``monge`` command, the demo sections and the HTML report."""

from .main import main

__all__ = ["main"]
