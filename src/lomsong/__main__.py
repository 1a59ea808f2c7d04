"""``python -m lomsong``: the same as the ``lomsong`` command (the demo starts agents this way)."""

from lomsong.cli import main

if __name__ == "__main__":
    main()
