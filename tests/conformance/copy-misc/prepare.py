#!/usr/bin/env python3
"""Makes tree/hard a hardlink of tree/x/y and b.txt mode 0640 in the directory given (git keeps
neither)."""
import os, sys

d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
hard = os.path.join(d, "tree", "hard")
if os.path.lexists(hard):
    os.remove(hard)
os.link(os.path.join(d, "tree", "x", "y"), hard)
os.chmod(os.path.join(d, "b.txt"), 0o640)
