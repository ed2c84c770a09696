"""diyc's benchmark suite: diycd against the in-process bindings, a raw netlink
floor, the CNI reference plugins, `ip` commands and runc, side by side.

Run it with ``sudo bench/run.sh``; ``bench/bench.py`` is the entry point and
this package holds its parts.
"""
