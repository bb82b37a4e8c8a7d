/* systemd 252's TPM2 unlock, as systemd-cryptsetup's token path runs it, without device-mapper:
 * libcryptsetup loads systemd's token plugin (libcryptsetup-token-systemd-tpm2.so, Debian 12's
 * systemd package) and asks it to open TOKEN of the LUKS2 image IMG, then checks the passphrase
 * the plugin returns against the token's keyslot. name = NULL: verification only, no dm table.
 * One unlock per process, as at boot. Prints the keyslot opened (or the negative errno).
 * Usage: plugin_open IMG TCTI TOKEN [SIGNATURE]   (TCTI as systemd's tpm2-device=, e.g.
 *   swtpm:host=H,port=P; SIGNATURE: tpm2-pcr-signature.json for a signed-policy token)
 * Built by tests/bench/unlock/run.sh: gcc plugin_open.c $(pkg-config --libs libcryptsetup). */
#include <libcryptsetup.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* struct systemd_tpm2_plugin_params of systemd v252 (src/cryptsetup/cryptsetup-tokens/
 * cryptsetup-token-systemd-tpm2.c); later versions add fields. */
struct systemd_tpm2_plugin_params {
    uint32_t search_pcr_mask;
    const char *device;
    const char *signature_path;
};

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s IMG TCTI TOKEN [SIGNATURE]\n", argv[0]);
        return 2;
    }
    struct crypt_device *cd = NULL;
    int r = crypt_init(&cd, argv[1]);
    if (r < 0) {
        fprintf(stderr, "crypt_init %s: %d\n", argv[1], r);
        return 1;
    }
    r = crypt_load(cd, CRYPT_LUKS2, NULL);
    if (r >= 0) {
        struct systemd_tpm2_plugin_params params = {
            .search_pcr_mask = UINT32_MAX, .device = argv[2], .signature_path = argc == 5 ? argv[4] : NULL};
        r = crypt_activate_by_token_pin(cd, NULL, "systemd-tpm2", atoi(argv[3]), NULL, 0, &params, 0);
    }
    crypt_free(cd);
    printf("%d\n", r);
    return r < 0 ? 1 : 0;
}
