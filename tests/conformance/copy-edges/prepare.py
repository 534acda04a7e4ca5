#!/usr/bin/env python3
"""Writes the compressed inputs in the directory given (binary files stay out of git): plain.gz
(gzip of text), plain.txt.xz (xz of text), gzplain.dat (gzip of text, no extension) and real.tgz
(a gzipped tar)."""
import gzip, io, lzma, os, sys, tarfile

d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(d, "plain.gz"), "wb") as f:
    f.write(gzip.compress(b"hello\n", mtime=0))
with open(os.path.join(d, "gzplain.dat"), "wb") as f:
    f.write(gzip.compress(b"not a tar\n", mtime=0))
with open(os.path.join(d, "plain.txt.xz"), "wb") as f:
    f.write(lzma.compress(b"x\n"))
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    info = tarfile.TarInfo("tt/in")
    data = b"in\n"
    info.size = len(data)
    info.mtime = 1700000000
    t.addfile(info, io.BytesIO(data))
with open(os.path.join(d, "real.tgz"), "wb") as f:
    f.write(gzip.compress(buf.getvalue(), mtime=0))
