// agentctl: the operator's CLI. Talks to ballast-agent over D-Bus for everything that touches
// the running node; works offline for what needs no daemon.
#include <signal.h>

#include <cstdio>
#include <functional>
#include <memory>

#include <CLI/CLI.hpp>

#include "ballast/core/log.hpp"
#include "ballast_config.h"
#include "ctl.hpp"

namespace {

using namespace ballast::ctl;

// What the parsed sub-command runs. Each builder below keeps its options in storage its
// callbacks own, and sets the action when its sub-command is parsed.
using Action = std::function<int()>;

template <class T>
std::shared_ptr<T> options() {
    return std::make_shared<T>();
}

void add_global_options(CLI::App& app, GlobalOptions& g) {
    app.set_version_flag("--version", BALLAST_VERSION);
    app.add_option(
           "--bus-address", g.bus_address,
           "D-Bus address of the agent (default: $BALLAST_BUS_ADDRESS, else the system bus)")
        ->option_text("ADDR");
    app.add_flag("--json", g.json, "Machine-readable JSON output");
    app.add_option("--root", g.root, "Node root for commands that work without the daemon")
        ->option_text("DIR");
}

void add_agent_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
    app.add_subcommand("status", "Show the agent's and the slots' state")->callback([&] {
        action = [&] { return cmd_status(g); };
    });
    app.add_subcommand("version", "Show the versions of agentctl and the agent")->callback([&] {
        action = [&] { return cmd_version(g); };
    });
    auto level = options<std::string>();
    auto* log_level = app.add_subcommand("log-level", "Show or set the agent's log level");
    log_level->add_option("LEVEL", *level, "trace, debug, info, warning, error, critical or off");
    log_level->callback([&, level] { action = [&, level] { return cmd_log_level(g, *level); }; });
    app.add_subcommand("reload", "Re-read /etc/ballast/agent.yaml")->callback([&] {
        action = [&] { return cmd_reload(g); };
    });
}

void add_config_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
    auto* config =
        app.add_subcommand("config", "Check and show cloud-config (works without the daemon)");
    config->require_subcommand(1);
    struct Opts {
        std::vector<std::string> files;
        bool strict = false;
    };
    auto o = options<Opts>();
    auto* validate =
        config->add_subcommand("validate", "Check cloud-config files; errors as file:line:col");
    validate->add_option("FILE", o->files, "Files to check, merged as a node would")->required();
    validate->add_flag("--strict", o->strict,
                       "Treat warnings (unknown keys, missing header) as errors");
    validate->callback(
        [&, o] { action = [&, o] { return cmd_config_validate(g, o->files, o->strict); }; });
    auto* show = config->add_subcommand(
        "show", "Print the node's effective merged config with each value's source");
    show->add_option("--config", o->files, "Extra file, read after the node's sources (repeatable)")
        ->option_text("FILE");
    show->callback([&, o] { action = [&, o] { return cmd_config_show(g, o->files); }; });
    auto* schema = config->add_subcommand(
        "schema", "Print the JSON Schema of cloud-config files (for editors), from the decoder");
    auto agent = options<bool>();
    schema->add_flag("--agent-settings", *agent, "The schema of agent.yaml instead");
    schema->callback([&, agent] { action = [agent] { return cmd_config_schema(*agent); }; });
}

// The options `uki build` and `bundle create --uki` share, returned. With `from_image` the
// kernel, initrd and os-release default to the image's own and the keys are checked by the
// builder.
std::vector<CLI::Option*> add_uki_build_options(CLI::App& cmd, ballast::update::UkiBuildOptions& b,
                                                bool from_image) {
    const std::string own = from_image ? " (default: the image's own)" : "";
    auto* linux_opt =
        cmd.add_option("--linux", b.linux_image, "Kernel image" + own)->check(CLI::ExistingFile);
    auto* initrd =
        cmd.add_option("--initrd", b.initrd, "Initramfs" + own)->check(CLI::ExistingFile);
    auto* osrel = cmd.add_option("--os-release", b.os_release, "os-release of the release" + own)
                      ->check(CLI::ExistingFile);
    auto* priv = cmd.add_option("--pcr-private-key", b.pcr_private_key,
                                "RSA key (PEM) that signs the release's PCR 11")
                     ->check(CLI::ExistingFile);
    auto* pub = cmd.add_option("--pcr-public-key", b.pcr_public_key,
                               "Its public key (PEM), carried as .pcrpkey")
                    ->check(CLI::ExistingFile);
    if (!from_image)
        for (auto* o : {linux_opt, initrd, osrel, priv, pub})
            o->required();
    return {linux_opt,
            initrd,
            osrel,
            priv,
            pub,
            cmd.add_option("--stub", b.stub, "systemd-stub (default " + b.stub + ")")
                ->check(CLI::ExistingFile),
            cmd.add_option("--secureboot-key", b.sb_key, "Secure Boot db key (sbsign --key)"),
            cmd.add_option("--secureboot-certificate", b.sb_cert, "Its certificate (sbsign --cert)")
                ->check(CLI::ExistingFile),
            cmd.add_option("--secureboot-engine", b.sb_engine,
                           "OpenSSL engine holding the key (sbsign --engine, e.g. pkcs11); "
                           "--secureboot-key is then the engine's name for it")};
}

void add_bundle_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
    auto* bundle =
        app.add_subcommand("bundle", "Create, verify and inspect update bundles (offline)");
    bundle->require_subcommand(1);
    auto create = options<ballast::update::CreateOptions>();
    auto* bcreate =
        bundle->add_subcommand("create", "Sign a squashfs/erofs root image into a bundle");
    bcreate
        ->add_option("--image", create->image,
                     "squashfs or erofs root image with /boot/vmlinuz, /boot/initrd.img")
        ->required()
        ->check(CLI::ExistingFile);
    bcreate->add_option("--version", create->version, "Version of the image")->required();
    bcreate->add_option("--compatible", create->compatible, "Compatible string the node must have")
        ->required();
    bcreate->add_option("--os-name", create->os_name, "OS name (default ballast-os)");
    bcreate->add_option("--key", create->key, "Signing key (PEM)")
        ->required()
        ->check(CLI::ExistingFile);
    bcreate->add_option("--cert", create->cert, "Signing certificate (PEM)")
        ->required()
        ->check(CLI::ExistingFile);
    bcreate->add_option("--chain", create->chain, "Intermediate certificates (PEM)")
        ->check(CLI::ExistingFile);
    bcreate->add_option("-o,--output", create->out, "Bundle folder, or a .tar file")->required();
    bcreate->add_flag("--no-index", create->no_index,
                      "Leave out the chunk index (for agents that predate it; no delta fetch)");
    bcreate->add_flag("--verity", create->verity,
                      "Append a dm-verity hash tree to the image, its root hash in the manifest");
    struct UkiOpts {
        bool on = false;
        ballast::update::CreateOptions::Uki uki;
    };
    auto u = options<UkiOpts>();
    auto* with_uki = bcreate->add_flag(
        "--uki", u->on,
        "Build the release's signed UKI into the bundle (needs --verity and the PCR key pair): "
        "its command line carries the root hash");
    auto uki_opts = add_uki_build_options(*bcreate, u->uki.build, true);
    uki_opts.push_back(bcreate->add_option(
        "--uki-cmdline", u->uki.cmdline,
        "Kernel command line words after the root hash (\"quiet console=ttyS0\")"));
    for (auto* opt : uki_opts)
        opt->needs(with_uki);
    for (const char* name : {"--verity", "--pcr-private-key", "--pcr-public-key"})
        with_uki->needs(bcreate->get_option(name));
    bcreate->callback([&, create, u] {
        if (u->on) create->uki = u->uki;
        action = [&, create] { return cmd_bundle_create(g, *create); };
    });
    struct Opts {
        std::string src, keyring;
    };
    auto o = options<Opts>();
    auto* bverify =
        bundle->add_subcommand("verify", "Check a bundle's signature, manifest and image");
    bverify->add_option("SRC", o->src, "Bundle folder or .tar")->required();
    bverify->add_option("--keyring", o->keyring,
                        "Trusted certificates (PEM); default: the system's keyring");
    bverify->callback(
        [&, o] { action = [&, o] { return cmd_bundle_verify(g, o->src, o->keyring); }; });
    struct ExportOpts {
        std::string src, layout, tag;
    };
    auto e = options<ExportOpts>();
    auto* bexport = bundle->add_subcommand(
        "export", "Write a bundle as an OCI image layout (for skopeo copy oci:DIR:TAG ...)");
    bexport->add_option("SRC", e->src, "Bundle folder or .tar")->required();
    bexport->add_option("--oci-layout", e->layout, "Layout folder (made if missing)")->required();
    bexport->add_option("--tag", e->tag, "Tag in the layout (default: the bundle's version)");
    bexport->callback(
        [&, e] { action = [&, e] { return cmd_bundle_export(g, e->src, e->layout, e->tag); }; });
    struct PushOpts {
        std::string src, ref, auth_file, ca_file;
    };
    auto p = options<PushOpts>();
    auto* bpush =
        bundle->add_subcommand("push", "Upload a bundle to an OCI registry as one artifact");
    bpush->add_option("SRC", p->src, "Bundle folder or .tar")->required();
    bpush->add_option("REF", p->ref, "REGISTRY/REPOSITORY:TAG")->required();
    bpush
        ->add_option("--auth-file", p->auth_file,
                     "Credentials (containers-auth.json / ~/.docker/config.json format)")
        ->check(CLI::ExistingFile);
    bpush->add_option("--ca-file", p->ca_file, "CA certificates (PEM) to trust for the registry")
        ->check(CLI::ExistingFile);
    bpush->callback([&, p] {
        action = [&, p] { return cmd_bundle_push(g, p->src, p->ref, p->auth_file, p->ca_file); };
    });
    auto* binspect = bundle->add_subcommand("inspect", "Show a bundle's manifest (no checks)");
    binspect->add_option("SRC", o->src, "Bundle folder or .tar")->required();
    binspect->callback([&, o] { action = [&, o] { return cmd_bundle_inspect(g, o->src); }; });
}

void add_install_command(CLI::App& app, const GlobalOptions& g, Action& action) {
    struct Opts {
        ballast::install::Options inst;
        bool reboot = false, poweroff = false, no_reboot = false;
    };
    auto o = options<Opts>();
    auto& inst = o->inst;
    auto* install =
        app.add_subcommand("install", "Partition a disk or image file and install a bundle on it");
    install->add_option("--device", inst.device,
                        "Block device or image file (default: install.device)");
    install->add_option("--bundle", inst.bundle,
                        "Bundle folder or .tar, https:// URL, or oci://REGISTRY/REPO:TAG (else "
                        "install.source)");
    install->add_flag("--auto", inst.auto_mode,
                      "At boot (ballast-install.service): settings from this node's cloud-config; "
                      "only if install.auto is true and the device holds no Ballast disk");
    install->add_option("--keyring", inst.keyring,
                        "Trusted certificates (PEM); default: the system's keyring");
    install
        ->add_option("--config", inst.config_files,
                     "Cloud-config: its install: block, copied into OEM (repeatable)")
        ->check(CLI::ExistingFile);
    install->add_flag("--force", inst.force,
                      "Erase a device that holds a filesystem or partition table");
    install->add_option("--tpm2-device", inst.tpm2_device,
                        "TPM for install.encrypted_partitions, as a TCTI (default: agent.yaml "
                        "tpm.device, else /dev/tpmrm0)");
    install->add_flag("--no-format", inst.no_format,
                      "Into the disk's existing Ballast layout: no partitioning or formatting, "
                      "persistent data kept (else install.no-format)");
    install->add_flag("--dry-run", inst.dry_run,
                      "Check everything and print the plan; write nothing");
    install->add_option("--efi-size", inst.efi_mib, "ESP size in MiB (default 64)");
    install->add_option("--oem-size", inst.oem_mib, "OEM partition size in MiB (default 64)");
    install->add_option("--slot-size", inst.slot_mib,
                        "Slot size in MiB (default: twice the image, at least 256)");
    install->add_option("--persistent-size", inst.persistent_mib,
                        "Persistent partition size in MiB (default: the rest)");
    auto* o_reboot =
        install->add_flag("--reboot", o->reboot, "Reboot when installed (else install.reboot)");
    auto* o_poweroff = install->add_flag("--poweroff", o->poweroff,
                                         "Power off when installed (else install.poweroff)");
    install
        ->add_flag("--no-reboot", o->no_reboot,
                   "Neither reboot nor power off, whatever the config says")
        ->excludes(o_reboot)
        ->excludes(o_poweroff);
    o_reboot->excludes(o_poweroff);
    install->callback([&, o] {
        action = [&, o] {
            if (o->reboot || o->poweroff || o->no_reboot)
                o->inst.after = o->reboot ? "reboot" : o->poweroff ? "poweroff" : "none";
            return cmd_install(g, o->inst);
        };
    });
}

void add_reset_command(CLI::App& app, const GlobalOptions& g, Action& action) {
    // Choices the cloud-config's reset: block makes unless given here (--flag, or --flag=false).
    struct Choice {
        bool value = false;
        CLI::Option* opt = nullptr;
        [[nodiscard]] std::optional<bool> given() const {
            return opt->count() ? std::optional<bool>(value) : std::nullopt;
        }
    };
    struct Opts {
        ballast::install::ResetOptions reset;
        Choice oem, persistent, poweroff, reboot, graceful;
        bool no_reboot = false, force = false;
    };
    auto o = options<Opts>();
    auto& r = o->reset;
    auto* reset = app.add_subcommand(
        "reset", "Factory reset: this node at its next boot, or a disk not in use (--device)");
    reset->add_option("--device", r.device,
                      "A disk not in use (from recovery, or an image file), reset now");
    o->persistent.opt = reset->add_flag(
        "--reset-persistent", o->persistent.value,
        "Wipe the persistent partition (default: reset.reset-persistent, else true; =false "
        "keeps it and wipes OEM only)");
    o->oem.opt = reset->add_flag(
        "--reset-oem", o->oem.value,
        "Wipe the OEM partition, its cloud-config (default: reset.reset-oem, else false)");
    reset->add_flag("--encrypt", r.encrypt,
                    "Make persistent LUKS2 (sealed to the TPM) even if it was plain");
    o->poweroff.opt =
        reset->add_flag("--poweroff", o->poweroff.value,
                        "This node: power off once the reset is done (default: reset.poweroff)");
    o->reboot.opt = reset->add_flag("--reboot", o->reboot.value,
                                    "This node: reboot now for the reset (default: reset.reboot, "
                                    "else true)");
    o->graceful.opt = reset->add_flag(
        "--graceful", o->graceful.value,
        "This node: leave the k3s cluster first (cordon, drain, delete the Node; default: when "
        "k3s is set up here)");
    reset->add_flag("--force", o->force,
                    "This node: reset even when it cannot leave its cluster (unreachable)");
    reset->add_flag("--no-reboot", o->no_reboot,
                    "This node: reset at the next boot, whenever that is (--reboot=false)");
    reset
        ->add_option("--config", r.config_files,
                     "--device: cloud-config whose reset: block applies and whose before-reset "
                     "and after-reset stages run (repeatable)")
        ->check(CLI::ExistingFile);
    reset->add_option("--tpm2-device", r.tpm2_device,
                      "--device: TPM for an encrypted persistent partition, as a TCTI (default: "
                      "agent.yaml tpm.device, else /dev/tpmrm0)");
    reset->add_flag("--dry-run", r.dry_run,
                    "--device: check everything and print the plan; write nothing");
    reset->callback([&, o] {
        action = [&, o] {
            auto opts = o->reset;
            opts.reset_persistent = o->persistent.given();
            opts.reset_oem = o->oem.given();
            opts.poweroff = o->poweroff.given();
            auto reboot = o->reboot.given();
            if (o->no_reboot) {
                if (reboot.value_or(false))
                    return report_error(
                        ballast::Error(ballast::Errc::invalid_argument,
                                       "--reboot and --no-reboot contradict each other"));
                reboot = false;
            }
            return cmd_reset(g, std::move(opts), reboot, o->graceful.given(), o->force);
        };
    });
}

void add_stage_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
    auto* stage = app.add_subcommand("stage", "Cloud-config stages");
    stage->require_subcommand(1);
    struct Opts {
        std::string name;
        std::vector<std::string> files;
        bool dry_run = false, verbose = false;
    };
    auto o = options<Opts>();
    auto* run =
        stage->add_subcommand("run", "Run a stage now (through the agent when it is running)");
    run->add_option("NAME", o->name,
                    "rootfs, initramfs, fs, boot, network, reconcile, or a custom name")
        ->required();
    run->add_option("--config", o->files, "Extra file, read after the node's sources (repeatable)")
        ->option_text("FILE");
    run->add_flag("--dry-run", o->dry_run, "Print the plan; change nothing");
    run->add_flag("-v,--verbose", o->verbose, "Also list unchanged steps and notes");
    run->callback([&, o] {
        action = [&, o] { return cmd_stage_run(g, o->name, o->files, o->dry_run, o->verbose); };
    });
}

void add_slot_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
    struct Opts {
        std::string source, slot;
        bool force = false, no_reboot = false, dry_run = false;
    };
    auto o = options<Opts>();
    auto* upgrade = app.add_subcommand(
        "upgrade", "Write a bundle into the other slot, activate it on trial and reboot");
    upgrade
        ->add_option("SOURCE", o->source,
                     "Bundle folder, .tar, https:// URL of a .tar, or oci://REGISTRY/REPO:TAG")
        ->required();
    upgrade->add_flag("--force", o->force, "Accept a version that failed on this node before");
    upgrade->add_flag("--no-reboot", o->no_reboot, "Do not reboot; the new slot boots next time");
    upgrade->add_flag("--dry-run", o->dry_run,
                      "Check the bundle and say how many bytes it would download; write nothing");
    upgrade->callback([&, o] {
        action = [&, o] {
            return cmd_upgrade(
                g, o->source,
                {.force = o->force, .no_reboot = o->no_reboot, .dry_run = o->dry_run});
        };
    });
    auto* health = app.add_subcommand(
        "health", "Run the boot assessment: commit a slot on trial, or mark it bad and reboot");
    health->add_flag("--no-reboot", o->no_reboot, "Do not reboot when the slot on trial fails");
    health->callback([&, o] { action = [&, o] { return cmd_health(g, o->no_reboot); }; });
    auto* rollback =
        app.add_subcommand("rollback", "Make the other (good) slot primary, persistently");
    rollback->add_flag("--no-reboot", o->no_reboot, "Do not reboot into it now");
    rollback->callback([&, o] { action = [&, o] { return cmd_rollback(g, o->no_reboot); }; });
    auto* recovery = app.add_subcommand(
        "recovery", "Boot the recovery entry once: persistent neither unlocked nor mounted");
    recovery->add_flag("--no-reboot", o->no_reboot, "Do not reboot into it now");
    recovery->callback([&, o] { action = [&, o] { return cmd_recovery(g, o->no_reboot); }; });
    for (bool good : {true, false}) {
        auto* mark = app.add_subcommand(good ? "mark-good" : "mark-bad",
                                        good ? "Mark a slot good (default: the booted one)"
                                             : "Mark a slot bad (default: the booted one)");
        mark->add_option("SLOT", o->slot, "A or B")->check(CLI::IsMember({"A", "B"}));
        mark->callback(
            [&, o, good] { action = [&, o, good] { return cmd_mark(g, good, o->slot); }; });
    }
}

void add_uki_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
    auto* uki = app.add_subcommand(
        "uki", "Build and inspect a release's Unified Kernel Image (offline, on the build host)");
    uki->require_subcommand(1);
    auto b = options<ballast::update::UkiBuildOptions>();
    auto* build = uki->add_subcommand(
        "build", "systemd-stub + kernel, initrd, command line, os-release, PCR key and signature");
    add_uki_build_options(*build, *b, false);
    build->add_option("--cmdline", b->cmdline, "File with the kernel command line")
        ->required()
        ->check(CLI::ExistingFile);
    build->add_option("--phase", b->phases,
                      "Boot phase path(s) to sign, as systemd-measure takes them (default "
                      "enter-initrd only: the running system then cannot unseal)");
    build->add_option("-o,--output", b->output, "The UKI to write")->required();
    build->callback([&, b] { action = [&, b] { return cmd_uki_build(g, *b); }; });
    auto path = options<std::string>();
    auto* inspect = uki->add_subcommand(
        "inspect", "Sections, command line, predicted PCR 11 and whether .pcrsig signs it");
    inspect->add_option("UKI", *path, "The image")->required()->check(CLI::ExistingFile);
    inspect->callback([&, path] { action = [&, path] { return cmd_uki_inspect(g, *path); }; });
    struct VerifyOpts {
        std::string path, db, dbx;
    };
    auto v = options<VerifyOpts>();
    auto* verify = uki->add_subcommand(
        "verify",
        "Check the UKI's Secure Boot signature against db and dbx as the firmware will (exit 1 "
        "when it would refuse it)");
    verify->add_option("UKI", v->path, "The image")->required()->check(CLI::ExistingFile);
    verify
        ->add_option("--db", v->db,
                     "Allowed signatures: an EFI signature list (cert-to-efi-sig-list); default: "
                     "this machine's db")
        ->check(CLI::ExistingFile);
    auto* db_opt = verify->get_option("--db");
    verify
        ->add_option("--dbx", v->dbx,
                     "Forbidden signatures: an EFI signature list (with --db); default: this "
                     "machine's dbx")
        ->check(CLI::ExistingFile)
        ->needs(db_opt);
    verify->callback(
        [&, v] { action = [&, v] { return cmd_uki_verify(g, v->path, v->db, v->dbx); }; });
}

void add_k3s_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
    auto* k3s = app.add_subcommand("k3s", "k3s on this node");
    k3s->require_subcommand(1);
    k3s->add_subcommand(
           "status", "Role, server, version, readiness and the rendered config (secrets redacted)")
        ->callback([&] { action = [&] { return cmd_k3s_status(g); }; });
}

void add_encrypt_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
    auto* encrypt = app.add_subcommand(
        "encrypt", "Keyslots of the encrypted persistent partition (on the node, as root)");
    encrypt->require_subcommand(1);
    auto enc = options<EncryptOptions>();
    auto device_opts = [&, enc](CLI::App* c) {
        c->add_option(
            "--device", enc->device,
            "LUKS2 device or image file (default " + std::string(kPersistentDevice) + ")");
        c->add_option("--tpm2-device", enc->tpm2_device,
                      "TPM as a TCTI: device:/dev/tpmrm0, swtpm:host=H,port=P (default: "
                      "agent.yaml tpm.device, else /dev/tpmrm0)");
        c->add_option("--tpm2-signature", enc->signature,
                      "Signed PCR policies of this boot, tpm2-pcr-signature.json (default: "
                      "agent.yaml tpm.signature, else systemd's places and /.extra)");
        c->callback([&, enc, c] {
            action = [&, enc, verb = c->get_name()] { return cmd_encrypt(g, verb, *enc); };
        });
        return c;
    };
    device_opts(encrypt->add_subcommand(
        "status", "Keyslots, tokens, PCRs and whether the current PCRs satisfy each policy"));
    for (auto [name, help] : {std::pair{"enroll", "Seal a new keyslot to the TPM2"},
                              std::pair{"reseal",
                                        "Seal to the current PCRs and drop the TPM2 keyslots "
                                        "this replaces"}}) {
        auto* c = device_opts(encrypt->add_subcommand(name, help));
        c->add_option("--pcrs", enc->pcrs, "PCRs to bind, e.g. 7 or 7,14 (default agent.yaml)");
        c->add_option("--pcr-bank", enc->pcr_bank, "sha1, sha256, sha384, sha512 (default sha256)");
        c->add_flag("--pin", enc->pin, "Also require a PIN (NEWPIN or asked on the terminal)");
        c->add_option("--tpm2-public-key", enc->public_key,
                      "Also bind to PCRs signed by this PEM RSA key (a signed policy, as "
                      "systemd-cryptenroll's; default agent.yaml tpm.public_key)");
        c->add_option("--tpm2-public-key-pcrs", enc->public_key_pcrs,
                      "PCRs the signed policy covers (default agent.yaml, 11)");
        c->add_option("--unlock-key-file", enc->unlock_key_file,
                      "Recovery key or passphrase to open the volume (default: the TPM)");
    }
    auto* rk = device_opts(
        encrypt->add_subcommand("recovery-key", "Add a new recovery key and show it once"));
    rk->add_option("--unlock-key-file", enc->unlock_key_file,
                   "Recovery key or passphrase to open the volume (default: the TPM)");
    rk->add_flag("--replace", enc->replace, "Remove the other recovery keys afterwards");
    auto* wipe = device_opts(encrypt->add_subcommand(
        "wipe-slot", "Remove a keyslot (never the last recovery or passphrase slot)"));
    wipe->add_option("slot", enc->slot, "Keyslot number")->required()->check(CLI::Range(0, 31));
}

int run(int argc, char** argv) {
    ::signal(SIGPIPE, SIG_IGN);
    // Library logging (stages, libcryptsetup) to stderr, so stdout carries only the output
    // (--json documents stay parseable); warnings and errors only, progress comes from `say`.
    ballast::log::init("agentctl", spdlog::level::warn, ballast::log::Target::stderr_text);

    CLI::App app{"Control the Ballast agent on this node", "agentctl"};
    app.require_subcommand(1);
    app.fallthrough();  // global options may follow the sub-command
    GlobalOptions g;
    Action action;
    add_global_options(app, g);
    add_agent_commands(app, g, action);
    add_config_commands(app, g, action);
    add_bundle_commands(app, g, action);
    add_install_command(app, g, action);
    add_reset_command(app, g, action);
    add_stage_commands(app, g, action);
    add_slot_commands(app, g, action);
    add_k3s_commands(app, g, action);
    add_uki_commands(app, g, action);
    add_encrypt_commands(app, g, action);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? kExitOk : kExitUsage;
    }
    return action ? action() : kExitUsage;
}

}  // namespace

// A bug that throws ends here, with a message and EX_SOFTWARE, not in std::terminate's abort.
int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "agentctl: internal error: %s\n", e.what());
        return 70;
    }
}
