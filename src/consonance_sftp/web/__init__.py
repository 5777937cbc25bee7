"""The operator console: a FastAPI app (``create_app``) with Jinja2 pages and htmx served from
the package. It calls the same app functions as the CLI (``app.operations``, ``app.alerts``,
``app.console``), never SQL of its own."""
