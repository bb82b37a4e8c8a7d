#!/bin/bash
# dracut module "ballast": the immutable root. After the initramfs has mounted the slot read-only
# on /sysroot, ballast-mount.service runs `ballast-agent mount` (man ballast-agent(8)): finish a
# pending factory reset, unlock and mount BALLAST_PERSISTENT, the /etc and /var overlays, /tmp, /oem, the persistent paths,
# and the rootfs and initramfs cloud-config stages.
# dracut sources this file and sets moddir, initdir, systemdsystemunitdir and SYSTEMCTL.
# shellcheck disable=SC2154

check() {
    require_binaries ballast-agent || return 1
    return 0
}

depends() {
    # systemd-initrd: systemd finds and mounts the slot itself (root= through its fstab
    # generator); the image leaves out dracut's shell hooks (dracut-systemd), which cost about
    # 4.5 s of every boot under TCG (docs/performance.md). dm: /dev/mapper and its udev rules for
    # the unlocked partition; systemd-ask-password: the recovery-key prompt on the console when
    # the TPM cannot open it.
    echo systemd-initrd systemd-ask-password dm
    return 0
}

installkernel() {
    instmods overlay squashfs ext4 dm_crypt '=drivers/char/tpm'
    instmods xts aesni_intel
}

install() {
    # mke2fs: a factory reset asked for on the running node is finished here, before persistent
    # is mounted (install/reset.hpp), and makes persistent (and OEM) anew.
    inst_multiple ballast-agent cp chroot e2fsck mke2fs
    inst_simple /etc/mke2fs.conf
    # Loaded with dlopen() by ballast-agent, so dracut cannot find them through ldd itself:
    # libcrypto (signatures, TPM sessions), libcryptsetup and tpm2-tss (unlock), and what they
    # link (dracut does not follow a library's own dependencies here: libcryptsetup's
    # libjson-c and libargon2 used to come along only with dracut's crypt module). packaging/image/
    # check-initrd-libs.sh checks that every library in the initramfs resolves.
    local _arch=${DRACUT_ARCH:-$(uname -m)}
    inst_libdir_file {"$_arch/",}"libcrypto.so.*" {"$_arch/",}"libcryptsetup.so.*" \
        {"$_arch/",}"libjson-c.so.*" {"$_arch/",}"libargon2.so.*" \
        {"$_arch/",}"libtss2-esys.so.*" {"$_arch/",}"libtss2-mu.so.*" {"$_arch/",}"libtss2-rc.so.*" \
        {"$_arch/",}"libtss2-sys.so.*" {"$_arch/",}"libtss2-tctildr.so.*" \
        {"$_arch/",}"libtss2-tcti-device.so.*" {"$_arch/",}"libtss2-tcti-swtpm.so.*"
    # systemd's own emergency and rescue shells (dracut-systemd brought its own): a root that
    # cannot be mounted still ends at a console login, as on any Debian system.
    inst_multiple -o "$systemdsystemunitdir/emergency.service" "$systemdsystemunitdir/rescue.service" \
        "$systemdutildir/systemd-sulogin-shell" sulogin
    inst_simple "$moddir/ballast-mount.service" "$systemdsystemunitdir/ballast-mount.service"
    $SYSTEMCTL -q --root "$initdir" add-wants initrd-fs.target ballast-mount.service
}
