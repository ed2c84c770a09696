"""``python3 -m diyc``: see diyc.cli."""

from diyc.cli import run

if __name__ == "__main__":
    run()
