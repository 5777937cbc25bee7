"""Command-line interface: parses input, calls App, formats output."""
