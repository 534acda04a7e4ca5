#!/usr/bin/env python3
"""Writes payload.tar (with a "./" root entry) and payload.tgz (without one) into the directory
given (default: this one). Members are owned 5:6 so that --chown is visible."""
import io, os, sys, tarfile

def member(name, kind, mode, data=b"", link=""):
    t = tarfile.TarInfo(name)
    t.type, t.mode, t.uid, t.gid, t.mtime = kind, mode, 5, 6, 1_600_000_000
    t.uname = t.gname = ""
    t.size = len(data)
    t.linkname = link
    return t, (io.BytesIO(data) if data else None)

def write(path, with_root, mode):
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tf:
        if with_root:
            tf.addfile(*member("./", tarfile.DIRTYPE, 0o755))
        tf.addfile(*member("pkg/", tarfile.DIRTYPE, 0o750))
        tf.addfile(*member("pkg/bin/", tarfile.DIRTYPE, 0o755))
        tf.addfile(*member("pkg/bin/tool", tarfile.REGTYPE, 0o755, b"#!/bin/sh\necho tool\n"))
        tf.addfile(*member("pkg/bin/alias", tarfile.SYMTYPE, 0o777, link="tool"))
        tf.addfile(*member("pkg/README", tarfile.REGTYPE, 0o644, b"readme\n"))

out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
write(os.path.join(out, "payload.tar"), True, "w")
write(os.path.join(out, "payload.tgz"), False, "w:gz")
