"""The speed targets of lomsong, measured: ``python -m bench [NAME ...]`` (see README.md)."""
