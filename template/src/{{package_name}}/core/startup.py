"""What both entry points (`asgi.py`, `wsgi.py`) do once their app is made, before serving."""

import gc


def freeze_long_lived() -> None:
    """Keep what is alive now out of the garbage collector's full collections: the modules, the
    app, the password checker's dictionaries live as long as the process, and a full
    collection would otherwise walk all of them while every request in flight waits."""
    gc.collect()
    gc.freeze()
