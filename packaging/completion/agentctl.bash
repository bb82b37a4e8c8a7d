# bash completion for agentctl                                     -*- shell-script -*-
_agentctl() {
    local cur prev words cword
    _init_completion || return

    local global_opts="--bus-address --json --root --help --version"
    local commands="status version log-level reload"

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

    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$commands $global_opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$global_opts" -- "$cur"))
    fi
}
complete -F _agentctl agentctl
