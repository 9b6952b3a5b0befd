"""Command handlers for the CLI table, one module per resource."""
