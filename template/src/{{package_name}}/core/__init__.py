"""Framework-neutral auth core: no module here imports a web framework."""
