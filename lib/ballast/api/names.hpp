// The D-Bus contract between ballast-agent and its clients.
#pragma once

namespace ballast::api {

inline constexpr const char* kBusName = "org.ballast.Agent1";
inline constexpr const char* kObjectPath = "/org/ballast/Agent1";
inline constexpr const char* kInterface = "org.ballast.Agent1";

// Error names the daemon returns besides the standard org.freedesktop.DBus.Error.* ones.
inline constexpr const char* kErrorBusy = "org.ballast.Agent1.Error.Busy";
inline constexpr const char* kErrorFailed = "org.ballast.Agent1.Error.Failed";
inline constexpr const char* kErrorInvalid = "org.ballast.Agent1.Error.InvalidInput";

}  // namespace ballast::api
