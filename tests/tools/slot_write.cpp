// Benchmark tool (not installed): the slot-writing part of install and upgrade, alone, so it can
// be timed against dd + openssl on the same image and target:
//   slot-write BUNDLE KEYRING TARGET   check the signature and manifest, then write_image()
//                                      into TARGET from offset 0 (stream, hash, fsync, header
//                                      last, read back). Prints {"seconds", "bytes", "direct"}.
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "ballast/update/bundle.hpp"
#include "ballast/update/writer.hpp"

using namespace ballast;

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: slot-write BUNDLE KEYRING TARGET\n");
        return 2;
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto bundle = update::Bundle::open(argv[1]);
    if (!bundle) return std::fprintf(stderr, "%s\n", bundle.error().what().c_str()), 1;
    auto c = update::check_bundle(*bundle, argv[2]);
    if (!c) return std::fprintf(stderr, "%s\n", c.error().what().c_str()), 1;
    auto reader = update::file_reader(c->image.path, c->image.offset, c->image.size);
    if (!reader) return std::fprintf(stderr, "%s\n", reader.error().what().c_str()), 1;
    auto st = update::write_image(*reader, c->manifest.image.size, c->manifest.image.sha256,
                                  argv[3], 0, c->manifest.image.size + (1u << 20));
    if (!st) return std::fprintf(stderr, "%s\n", st.error().what().c_str()), 1;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s\n", nlohmann::json{{"seconds", s}, {"bytes", st->bytes}, {"direct", st->direct}}
                            .dump()
                            .c_str());
    return 0;
}
