#!/usr/bin/env python3
"""Writes the compressed inputs in the directory given (binary files stay out of git): plain.gz
(gzip of text), plain.txt.xz (xz of text), gzplain.dat (gzip of text, no extension) and real.tgz
(a gzipped tar); capfile with a file capability (cap_net_raw+ep) and a user xattr; a FIFO; and
h1, h2: one file under two names; odd.tar, whose entries are named /abs/x and a/../b."""
import gzip, io, lzma, os, struct, sys, tarfile

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

cap = os.path.join(d, "capfile")
with open(cap, "w") as f:
    f.write("cap\n")
# struct vfs_cap_data, revision 2, effective: permitted = CAP_NET_RAW (13).
os.setxattr(cap, "security.capability", struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0))
os.setxattr(cap, "user.note", b"kept")
fifo = os.path.join(d, "fifo")
if not os.path.exists(fifo):
    os.mkfifo(fifo, 0o644)
h1, h2 = os.path.join(d, "h1"), os.path.join(d, "h2")
for p in (h1, h2):
    if os.path.lexists(p):
        os.remove(p)
with open(h1, "w") as f:
    f.write("linked\n")
os.link(h1, h2)
with tarfile.open(os.path.join(d, "odd.tar"), "w", format=tarfile.GNU_FORMAT) as t:
    for name, data in (("/abs/x", b"abs\n"), ("a/../b", b"b\n")):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 1700000000
        t.addfile(info, io.BytesIO(data))
