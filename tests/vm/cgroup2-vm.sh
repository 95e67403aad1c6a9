#!/bin/bash
# Boots a Debian 12 VM (KVM) that runs on the unified cgroup v2 hierarchy and runs
# the cgroup v2 tests of the process sandbox there, against real memory/pids controllers.
#
#   tests/vm/cgroup2-vm.sh [--mirror URL] [--rebuild] [PYTEST ARGS...]
#
# VM_ACCEL=kvm|tcg|auto (default auto: KVM if a guest kernel boots with it, else TCG);
# VM_CPU overrides the KVM -cpu model (default host minus arch-capabilities: a nested KVM
# host may refuse to set that MSR). Needs root, /dev/kvm, and apt-get install qemu-system-x86 debootstrap e2fsprogs.
# The root filesystem (debootstrap: systemd, python3, python3-pytest, bubblewrap, g++,
# linux-image-amd64 whose kernel and initrd boot the VM) is built once under $VM_DIR
# (default /var/tmp/reward-cgroup2-vm) and reused. The worktree (without .git/.venv) is
# copied into a fresh disk image at every run. Inside, a systemd unit with Delegate=yes
# runs pytest (so the service's cgroup is a delegated subtree, as on a systemd host),
# then `systemd-run --scope -p Delegate=yes` runs it again (the other documented setup);
# the output comes back on the serial console, and the script exits with pytest's status.
# The Debian mirror comes from --mirror, else $DEBIAN_MIRROR, else this machine's apt sources.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VM_DIR=${VM_DIR:-/var/tmp/reward-cgroup2-vm}
MIRROR=${DEBIAN_MIRROR:-}
REBUILD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --mirror) MIRROR="$2"; shift 2 ;;
        --rebuild) REBUILD=1; shift ;;
        *) break ;;
    esac
done
PYTEST_ARGS=("$@")
[ ${#PYTEST_ARGS[@]} -gt 0 ] || PYTEST_ARGS=(tests/test_sandbox_cgroup2.py)

apt_debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f" | grep -v -- '-security' | grep '/debian/\?$' | head -n1 || true)
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' "$f" \
              | grep -v -- '-security' | grep '/debian/\?$' | head -n1 || true)
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
}

[ "$(id -u)" = 0 ] || { echo "error: needs root (debootstrap, the image)" >&2; exit 2; }
[ -e /dev/kvm ] || { echo "error: no /dev/kvm" >&2; exit 2; }
for tool in qemu-system-x86_64 debootstrap mkfs.ext4; do
    command -v "$tool" >/dev/null || { echo "error: $tool missing: apt-get install qemu-system-x86 debootstrap e2fsprogs" >&2; exit 2; }
done

ROOTFS="$VM_DIR/rootfs"
mkdir -p "$VM_DIR"
if [ "$REBUILD" = 1 ] || [ ! -e "$ROOTFS/.complete" ]; then
    [ -n "$MIRROR" ] || MIRROR=$(apt_debian_mirror)
    [ -n "$MIRROR" ] || { echo "error: no Debian mirror: pass --mirror URL or set DEBIAN_MIRROR" >&2; exit 2; }
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,udev,dbus,kmod,procps,util-linux,python3,python3-pytest,bubblewrap,g++,linux-image-amd64,initramfs-tools \
        bookworm "$ROOTFS" "$MIRROR"
    echo reward-cgroup2-vm > "$ROOTFS/etc/hostname"
    echo "/dev/vda / ext4 rw 0 1" > "$ROOTFS/etc/fstab"
    rm -f "$ROOTFS/etc/apt/sources.list" "$ROOTFS"/var/cache/apt/archives/*.deb
    # No login prompt on the console: the test unit owns it.
    chroot "$ROOTFS" systemctl mask serial-getty@ttyS0.service getty@tty1.service systemd-timesyncd.service >/dev/null 2>&1 || true
    touch "$ROOTFS/.complete"
fi

KERNEL=$(ls "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -n1)
INITRD=$(ls "$ROOTFS"/boot/initrd.img-* | sort -V | tail -n1)

# This run's copy of the worktree and the unit that tests it at boot.
STAGE="$VM_DIR/stage"
rm -rf "$STAGE" && mkdir -p "$STAGE"
cp -a "$ROOTFS/." "$STAGE/"
mkdir -p "$STAGE/work/repo"
tar -C "$REPO" --exclude=.git --exclude=.venv --exclude='__pycache__' --exclude='*.egg-info' -cf - . | tar -C "$STAGE/work/repo" -xf -
printf '%q ' "${PYTEST_ARGS[@]}" > "$STAGE/work/pytest-args"
cat > "$STAGE/work/run-tests.sh" <<'INNER'
#!/bin/bash
# Runs inside the VM, as the ExecStart of a unit with Delegate=yes.
cd /work/repo
exec > /dev/ttyS0 2>&1
echo "=== VM: $(uname -r); /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup); own cgroup $(cat /proc/self/cgroup)"
echo "=== controllers here: $(cat /sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/cgroup.controllers)"
eval "args=($(cat /work/pytest-args))"
echo "=== 1) pytest in a systemd unit with Delegate=yes"
python3 -m pytest -p no:cacheprovider -v -rsfE "${args[@]}"
rc1=$?
echo "=== 2) pytest under systemd-run --scope -p Delegate=yes"
systemd-run --quiet --scope -p Delegate=yes -- python3 -m pytest -p no:cacheprovider -v -rsfE "${args[@]}"
rc2=$?
echo "=== VM-RESULT rc1=$rc1 rc2=$rc2"
systemctl poweroff
INNER
chmod +x "$STAGE/work/run-tests.sh"
cat > "$STAGE/etc/systemd/system/cgroup2-tests.service" <<'UNIT'
[Unit]
Description=reward-service cgroup v2 tests
After=multi-user.target

[Service]
Type=oneshot
Delegate=yes
ExecStart=/work/run-tests.sh
TimeoutStartSec=2700

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/cgroup2-tests.service "$STAGE/etc/systemd/system/multi-user.target.wants/cgroup2-tests.service"

IMG="$VM_DIR/disk.img"
rm -f "$IMG"
mkfs.ext4 -q -F -L root -d "$STAGE" "$IMG" 3G
rm -rf "$STAGE"

# KVM when it works; nested under some hypervisors (e.g. a Firecracker VM) the guest kernel
# hangs before its first message, so a 20 s kernel-only probe decides, else TCG (slower).
ACCEL=${VM_ACCEL:-auto}
if [ "$ACCEL" = auto ]; then
    ACCEL=tcg
    if [ -e /dev/kvm ]; then
        probe="$VM_DIR/kvm-probe.log"
        : > "$probe"
        timeout 20 qemu-system-x86_64 -enable-kvm -cpu "${VM_CPU:-host,-arch-capabilities}" -m 512 -smp 1 \
            -nographic -no-reboot -kernel "$KERNEL" -append "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1" \
            -net none -serial "file:$probe" -monitor none -display none >/dev/null 2>&1 || true
        grep -aq "Linux version" "$probe" && ACCEL=kvm
    fi
    echo "accelerator: $ACCEL$([ "$ACCEL" = tcg ] && echo ' (KVM guest printed nothing within 20 s)')"
fi
if [ "$ACCEL" = kvm ]; then
    QEMU_ACCEL=(-enable-kvm -cpu "${VM_CPU:-host,-arch-capabilities}")
else
    QEMU_ACCEL=(-accel tcg,thread=multi -cpu max)
fi

LOG="$VM_DIR/console.log"
: > "$LOG"
timeout "${VM_TIMEOUT_S:-3000}" qemu-system-x86_64 "${QEMU_ACCEL[@]}" -m 2048 -smp 2 -nographic -no-reboot \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 systemd.show_status=0 panic=-1" \
    -drive "file=$IMG,format=raw,if=virtio" -net none -serial "file:$LOG" -monitor none -display none || true
sed -n '/^=== VM:/,$p' "$LOG" | grep -v '^\[' || true
line=$(grep -a '=== VM-RESULT' "$LOG" || true)
[ -n "$line" ] || { echo "error: the VM produced no test result; console log: $LOG" >&2; exit 1; }
case "$line" in *"rc1=0 rc2=0"*) exit 0 ;; *) exit 1 ;; esac
