#!/usr/bin/env python3
"""Gives the context (the directory given, default: this one) what git cannot hold: files and
directories with setuid, setgid and sticky bits under bits/, and bits.tar with such entries."""
import io, os, sys, tarfile

out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
bits = os.path.join(out, "bits")
os.makedirs(bits, exist_ok=True)
for name, mode in [("suid", 0o4755), ("sgid", 0o2755), ("both", 0o6750), ("sticky", 0o1755)]:
    p = os.path.join(bits, name)
    with open(p, "w") as f:
        f.write(name + "\n")
    os.chmod(p, mode)
for name, mode in [("sgid-dir", 0o2775), ("sticky-dir", 0o1777)]:
    p = os.path.join(bits, name)
    os.makedirs(p, exist_ok=True)
    with open(os.path.join(p, "inside"), "w") as f:
        f.write("inside\n")
    os.chmod(p, mode)

def member(name, kind, mode, data=b""):
    t = tarfile.TarInfo(name)
    t.type, t.mode, t.mtime, t.size = kind, mode, 1_600_000_000, len(data)
    return t, (io.BytesIO(data) if data else None)

with tarfile.open(os.path.join(out, "bits.tar"), "w", format=tarfile.PAX_FORMAT) as tf:
    tf.addfile(*member("tdir/", tarfile.DIRTYPE, 0o3775))
    tf.addfile(*member("tdir/tsuid", tarfile.REGTYPE, 0o6755, b"t\n"))
