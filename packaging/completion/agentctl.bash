# bash completion for agentctl                                     -*- shell-script -*-
_agentctl() {
    local cur prev words cword
    _init_completion || return

    local global_opts="--bus-address --json --root --help --version"
    local commands="status version log-level reload config stage"

    case $prev in
        --bus-address) return ;;
        --root) _filedir -d; return ;;
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
        config) COMPREPLY=($(compgen -W "validate show" -- "$cur")); return ;;
        stage) COMPREPLY=($(compgen -W "run" -- "$cur")); return ;;
        run) COMPREPLY=($(compgen -W "rootfs initramfs fs boot network reconcile" -- "$cur")); return ;;
        validate) _filedir '@(yaml|yml)'; return ;;
    esac
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$commands $global_opts" -- "$cur"))
    elif [[ $cmd == config ]]; then
        COMPREPLY=($(compgen -W "validate show --strict --config $global_opts" -- "$cur"))
        [[ $cur != -* ]] && _filedir '@(yaml|yml)'
    elif [[ $cmd == stage ]]; then
        COMPREPLY=($(compgen -W "run --config --dry-run --verbose $global_opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$global_opts" -- "$cur"))
    fi
}
complete -F _agentctl agentctl
