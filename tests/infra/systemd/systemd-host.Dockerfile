# A stand-in "VM" for the systemd end-to-end test: the stand-in base image plus a real systemd
# as PID 1. Nothing of the project is baked in; the test copies infra/systemd and the wheels in
# and runs install.sh, as an operator would.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ENV container=docker
# Unpinned on purpose: a stand-in VM gets bookworm's current systemd 252 point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends systemd systemd-sysv dbus \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 && systemctl mask getty.target console-getty.service systemd-firstboot.service \
      systemd-udevd.service systemd-udev-trigger.service systemd-remount-fs.service \
      systemd-logind.service sys-kernel-debug.mount sys-kernel-tracing.mount \
 && systemctl set-default multi-user.target
# Docker mounts the container's own cgroup subtree read-only (cgroup namespace "private"); make
# those mounts writable for this container's systemd. The host's cgroup tree is never mounted,
# so systemd here can only manage its own subtree (cgroup v1 and v2 alike).
# hadolint ignore=SC2016
RUN printf '%s\n' '#!/bin/sh' 'set -eu' \
      'for dir in /sys/fs/cgroup /sys/fs/cgroup/*/; do' \
      '  mount -o remount,bind,rw "$dir" 2>/dev/null || true' \
      'done' \
      'exec /lib/systemd/systemd "$@"' >/usr/local/sbin/boot-systemd \
 && chmod 0755 /usr/local/sbin/boot-systemd
STOPSIGNAL SIGRTMIN+3
CMD ["/usr/local/sbin/boot-systemd"]
