//! kiln's rootless RUN sandbox: user, mount, pid, uts, ipc and net namespaces, overlay rootfs.
