#!/usr/bin/env bash
# The real node's images, made from Debian's packages and a few lines of C, into the cache:
#   pause   - the pod sandbox: a static binary that sleeps until it is told to stop
#   busybox - busybox-static with its applets linked: the test workloads' image
# Prints the images folder. Needs gcc (static libc) and busybox-static.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
images="$(bash "$here/build.sh" --print-cache)/images"
mkdir -p "$images"
if [ -f "$images/pause.tar" ] && [ -f "$images/busybox.tar" ]; then echo "$images"; exit 0; fi

[ -x /bin/busybox ] || { echo "testenv: /bin/busybox is missing: apt-get install busybox-static" >&2; exit 1; }
command -v gcc >/dev/null || { echo "testenv: gcc is missing: apt-get install gcc libc6-dev" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/pause"
cat > "$work/pause.c" <<'C'
/* The pod sandbox's process: holds the pod's namespaces until SIGTERM or SIGINT, and reaps
   orphans (it is PID 1 of the pod when the pod shares its process namespace). */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction s = {0}, r = {0};
  s.sa_handler = stop; r.sa_handler = reap; r.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGINT, &s, NULL); sigaction(SIGTERM, &s, NULL); sigaction(SIGCHLD, &r, NULL);
  for (;;) pause();
}
C
gcc -static -O2 -o "$work/pause/pause" "$work/pause.c"
bash "$here/oci-archive.sh" "$work/pause" "$PAUSE_IMAGE" "$images/pause.tar" /pause

mkdir -p "$work/busybox/bin" "$work/busybox/tmp" "$work/busybox/etc"
cp /bin/busybox "$work/busybox/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$work/busybox/bin/$applet"
done
chmod 1777 "$work/busybox/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$work/busybox/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$work/busybox/etc/group"
bash "$here/oci-archive.sh" "$work/busybox" "$BUSYBOX_IMAGE" "$images/busybox.tar" /bin/sh
echo "$images"
