"""The FastAPI web layer: routing and HTTP shapes only; the work happens in `core`."""
