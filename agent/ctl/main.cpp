// agentctl: the operator's CLI. Talks to ballast-agent over D-Bus for everything that touches
// the running node; works offline for what needs no daemon.
#include <signal.h>

#include <CLI/CLI.hpp>

#include "ballast_config.h"
#include "ctl.hpp"

int main(int argc, char** argv) {
    using namespace ballast::ctl;
    ::signal(SIGPIPE, SIG_IGN);

    CLI::App app{"Control the Ballast agent on this node", "agentctl"};
    app.require_subcommand(1);
    app.fallthrough();  // global options may follow the sub-command
    app.set_version_flag("--version", BALLAST_VERSION);
    GlobalOptions g;
    app.add_option(
           "--bus-address", g.bus_address,
           "D-Bus address of the agent (default: $BALLAST_BUS_ADDRESS, else the system bus)")
        ->option_text("ADDR");
    app.add_flag("--json", g.json, "Machine-readable JSON output");
    app.add_option("--root", g.root, "Node root for commands that work without the daemon")
        ->option_text("DIR");

    auto* status = app.add_subcommand("status", "Show the agent's and the slots' state");
    auto* version = app.add_subcommand("version", "Show the versions of agentctl and the agent");
    std::string level;
    auto* log_level = app.add_subcommand("log-level", "Show or set the agent's log level");
    log_level->add_option("LEVEL", level, "trace, debug, info, warning, error, critical or off");
    auto* reload = app.add_subcommand("reload", "Re-read /etc/ballast/agent.yaml");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? kExitOk : kExitUsage;
    }

    if (status->parsed()) return cmd_status(g);
    if (version->parsed()) return cmd_version(g);
    if (log_level->parsed()) return cmd_log_level(g, level);
    if (reload->parsed()) return cmd_reload(g);
    return kExitUsage;
}
