# bash completion for ballast-agent                                -*- shell-script -*-
_ballast_agent() {
    local cur prev words cword
    _init_completion || return
    case $prev in
        --root) _filedir -d; return ;;
        --disk|--config) _filedir; return ;;
        --booted-slot) COMPREPLY=($(compgen -W "A B" -- "$cur")); return ;;
        --log-level)
            COMPREPLY=($(compgen -W "trace debug info warning error critical off" -- "$cur"))
            return ;;
        --bus-address) return ;;
    esac
    local i
    for ((i = 1; i < cword; i++)); do
        if [[ ${words[i]} == stage ]]; then
            if ((i + 1 == cword)); then
                COMPREPLY=($(compgen -W "rootfs initramfs fs boot network k3s-ready reconcile" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "--config --dry-run --access-only --wait-k3s-ready --json" -- "$cur"))
            fi
            return
        fi
    done
    COMPREPLY=($(compgen -W "stage leave --root --disk --config --bus-address --booted-slot --log-level --help --version" -- "$cur"))
}
complete -F _ballast_agent ballast-agent
