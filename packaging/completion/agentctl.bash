# bash completion for agentctl                                     -*- shell-script -*-
_agentctl() {
    local cur prev words cword
    _init_completion || return

    local global_opts="--bus-address --json --root --help --version"
    local commands="status version log-level reload config stage bundle install reset recovery upgrade health rollback mark-good mark-bad k3s encrypt uki"

    case $prev in
        --bus-address) return ;;
        --root) _filedir -d; return ;;
        --device) _filedir; return ;;
        --bundle|-o|--output) _filedir; return ;;
        --oci-layout) _filedir -d; return ;;
        --auth-file) _filedir json; return ;;
        --ca-file) _filedir pem; return ;;
        --tag) return ;;
        --image) _filedir '@(sqfs|squashfs|erofs|img)'; return ;;
        --key|--cert|--chain|--keyring) _filedir pem; return ;;
        --pcr-private-key|--pcr-public-key|--secureboot-key|--secureboot-certificate) _filedir; return ;;
        --linux|--initrd|--cmdline|--os-release|--stub) _filedir; return ;;
        --phase) COMPREPLY=($(compgen -W "enter-initrd enter-initrd:leave-initrd" -- "$cur")); return ;;
        --version|--compatible|--os-name|--efi-size|--oem-size|--slot-size|--persistent-size) return ;;
        log-level)
            COMPREPLY=($(compgen -W "trace debug info warning error critical off" -- "$cur"))
            return ;;
    esac

    local i cmd=""
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            --bus-address|--root) ((i++)) ;;
            -*) ;;
            *) cmd=${words[i]}; break ;;
        esac
    done

    case $prev in
        --config) _filedir '@(yaml|yml)'; return ;;
        config) COMPREPLY=($(compgen -W "validate show schema" -- "$cur")); return ;;
        stage) COMPREPLY=($(compgen -W "run" -- "$cur")); return ;;
        bundle) COMPREPLY=($(compgen -W "create verify export push inspect" -- "$cur")); return ;;
        run) COMPREPLY=($(compgen -W "rootfs initramfs fs boot network reconcile" -- "$cur")); return ;;
        validate) _filedir '@(yaml|yml)'; return ;;
        mark-good|mark-bad) COMPREPLY=($(compgen -W "A B" -- "$cur")); return ;;
        k3s) COMPREPLY=($(compgen -W "status" -- "$cur")); return ;;
        uki) COMPREPLY=($(compgen -W "build inspect verify" -- "$cur")); return ;;
        encrypt) COMPREPLY=($(compgen -W "status enroll reseal recovery-key wipe-slot" -- "$cur")); return ;;
        --unlock-key-file|--tpm2-public-key|--tpm2-signature) _filedir; return ;;
        --pcr-bank) COMPREPLY=($(compgen -W "sha1 sha256 sha384 sha512" -- "$cur")); return ;;
        --pcrs|--tpm2-device|--tpm2-public-key-pcrs) return ;;
    esac
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$commands $global_opts" -- "$cur"))
    elif [[ $cmd == config ]]; then
        COMPREPLY=($(compgen -W "validate show schema --strict --config --agent-settings $global_opts" -- "$cur"))
        [[ $cur != -* ]] && _filedir '@(yaml|yml)'
    elif [[ $cmd == bundle ]]; then
        COMPREPLY=($(compgen -W "--image --version --compatible --os-name --key --cert --chain -o --no-index --verity --uki --uki-cmdline --linux --initrd --os-release --stub --pcr-private-key --pcr-public-key --secureboot-key --secureboot-certificate --secureboot-engine --keyring --oci-layout --tag --auth-file --ca-file $global_opts" -- "$cur"))
        [[ $cur != -* ]] && _filedir
    elif [[ $cmd == install ]]; then
        COMPREPLY=($(compgen -W "--device --bundle --auto --keyring --config --force --no-format --dry-run --reboot --poweroff --no-reboot --efi-size --oem-size --slot-size --persistent-size --tpm2-device $global_opts" -- "$cur"))
    elif [[ $cmd == reset ]]; then
        COMPREPLY=($(compgen -W "--device --reset-persistent --reset-oem --poweroff --reboot --encrypt --graceful --force --no-reboot --config --tpm2-device --dry-run $global_opts" -- "$cur"))
    elif [[ $cmd == encrypt ]]; then
        COMPREPLY=($(compgen -W "--device --tpm2-device --pcrs --pcr-bank --pin --unlock-key-file --replace --tpm2-public-key --tpm2-public-key-pcrs --tpm2-signature $global_opts" -- "$cur"))
    elif [[ $cmd == uki ]]; then
        COMPREPLY=($(compgen -W "--linux --initrd --cmdline --os-release --pcr-private-key --pcr-public-key --phase --stub --secureboot-key --secureboot-certificate --secureboot-engine -o --db --dbx $global_opts" -- "$cur"))
        [[ $cur != -* ]] && _filedir '@(efi)'
    elif [[ $cmd == upgrade ]]; then
        COMPREPLY=($(compgen -W "--force --no-reboot --dry-run $global_opts" -- "$cur"))
        [[ $cur != -* ]] && _filedir '@(tar)'
    elif [[ $cmd == health || $cmd == rollback || $cmd == recovery ]]; then
        COMPREPLY=($(compgen -W "--no-reboot $global_opts" -- "$cur"))
    elif [[ $cmd == stage ]]; then
        COMPREPLY=($(compgen -W "run --config --dry-run --verbose $global_opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$global_opts" -- "$cur"))
    fi
}
complete -F _agentctl agentctl
