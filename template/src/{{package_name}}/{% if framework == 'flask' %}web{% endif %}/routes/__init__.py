"""Blueprints: each parses the request, calls the core, and shapes the response."""
