"""Web dashboard and JSON API (FastAPI): parses requests, calls App, renders output."""
