"""The delta benchmark's table: per client the median over runs of wire bytes, requests and wall
time, with ratios to the floor (bytes) and to today's https path (time)."""
import json
import statistics
import sys

runs_file, floor, image, index, files, raw = sys.argv[1], *map(int, sys.argv[2:])
by = {}
for line in open(runs_file):
    r = json.loads(line)
    by.setdefault(r["name"], []).append(r)
med = {n: {k: statistics.median(x[k] for x in rs) for k in ("wire", "requests", "seconds")} for n, rs in by.items()}
print(f"pair: v2 image {image} bytes; {files} files new or changed ({raw} bytes raw); "
      f"floor (xz -9) {floor} bytes; Ballast index {index} bytes")
print(f"{'client':<16}{'wire bytes':>14}{'x floor':>9}{'% image':>9}{'requests':>10}{'wall s':>9}{'x https':>9}")
https = med.get("https-full", {}).get("seconds")
for n, m in med.items():
    print(f"{n:<16}{int(m['wire']):>14}{m['wire'] / floor:>9.2f}{100 * m['wire'] / image:>9.2f}"
          f"{int(m['requests']):>10}{m['seconds']:>9.2f}{(m['seconds'] / https if https else 0):>9.2f}")
print("RAUC adaptive (published, not measured here): about 10 % of the bundle for a one-package change")
print(json.dumps({"floor": floor, "image": image, "index": index, "changed_files": files, "changed_raw": raw,
                  "median": med}))
