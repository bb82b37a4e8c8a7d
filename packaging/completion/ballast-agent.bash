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
    COMPREPLY=($(compgen -W "--root --disk --config --bus-address --booted-slot --log-level --help --version" -- "$cur"))
}
complete -F _ballast_agent ballast-agent
