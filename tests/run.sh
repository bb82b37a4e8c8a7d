#!/bin/bash
# Runs test layers and prints one line "N passed, N failed" over all of them.
# Usage: tests/run.sh BUILD_DIR LAYER...      LAYER: unit | integration | e2e
# JUnit XML lands in BUILD_DIR/test-results/<layer>.xml. Exit status 1 on any failure.
# PYTEST_MARKS narrows the pytest layers with a marker expression (e.g. "not packaging").
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:?usage: tests/run.sh BUILD_DIR LAYER...}")
shift
results=$build/test-results
mkdir -p "$results"
export BALLAST_BUILD_DIR=$build
xmls=()

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/run.sh: the integration and e2e layers need root (private buses, setpriv, loop devices)" >&2
fi

# Each layer's wall time, for .ci/run's report: "layer seconds", one line a layer run.
times=$results/times
for layer in "$@"; do
  xml=$results/$layer.xml
  rm -f "$xml"
  layer_start=$SECONDS
  case $layer in
    unit)
      echo "== unit tests (Catch2)"
      rc=0
      "$build/tests/unit-tests" --reporter junit --out "$xml" || rc=$?
      # Failed test cases are in the XML; a run that ends badly otherwise (LeakSanitizer's report
      # at exit, a crash after the last case) is a failure of its own, not a silent pass.
      rm -f "$results/unit-exit.xml"
      if [ "$rc" -ne 0 ] && [ -s "$xml" ] && ! grep -qE '<(failure|error)' "$xml"; then
        echo "tests/run.sh: unit-tests exited $rc with no failed test case (a sanitizer report?)" >&2
        echo "<testsuite tests=\"1\" failures=\"1\"><testcase classname=\"unit\" name=\"unit-tests exit status\"><failure message=\"exited $rc\"/></testcase></testsuite>" >"$results/unit-exit.xml"
        xmls+=("$results/unit-exit.xml")
      fi
      ;;
    integration|e2e)
      dir=$top/tests/$layer
      if ! compgen -G "$dir/test_*.py" >/dev/null; then
        echo "== $layer tests: none in tests/$layer yet"
        continue
      fi
      echo "== $layer tests (pytest)"
      marks=()
      [ -n "${PYTEST_MARKS:-}" ] && marks=(-m "$PYTEST_MARKS")
      # e2e: two VMs at once, in the groups tests/e2e/conftest.py makes (E2E_JOBS=1: one by one),
      # each with the host's cores shared out (BALLAST_E2E_SMP overrides): on 2 cores, one vCPU
      # a guest, 805 s for the layer against 1080 s with two (docs/performance.md).
      # integration: one worker a core, a test file each at a time (a file's module fixtures
      # are built once), INTEG_JOBS=1 one by one: 504 s serially in the clean-clone run of
      # 2026-12-08, most of it waits on daemons, QEMU's firmware boots and the .deb build.
      jobs=()
      [ "$layer" = e2e ] && [ "${E2E_JOBS:-2}" -gt 1 ] && jobs=(-n "${E2E_JOBS:-2}" --dist loadgroup)
      integ_jobs=${INTEG_JOBS:-$(nproc)}
      [ "$layer" = integration ] && [ "$integ_jobs" -gt 1 ] && jobs=(-n "$integ_jobs" --dist loadfile)
      smp=$(( $(nproc) / ${E2E_JOBS:-2} ))
      export BALLAST_E2E_SMP=${BALLAST_E2E_SMP:-$(( smp > 0 ? smp : 1 ))}
      (cd "$top" && /usr/bin/python3 -m pytest -p no:cacheprovider -q -rfE "$dir" \
         --junitxml="$xml" "${marks[@]}" "${jobs[@]}") || true
      ;;
    fuzz)
      # libFuzzer over each parser of untrusted input (build with `make fuzz`): the config loader,
      # the chunk index, the OCI artifact manifest, the clouds' answers (user-data, metadata
      # documents), UDF volumes, and UKIs with their PCR signature files. FUZZ_SECONDS (default 60) is shared out: half to the config
      # loader, whose input space is by far the larger, the rest evenly.
      secs=${FUZZ_SECONDS:-60}
      mkdir -p "$build/fuzz-artifacts"
      cases=""
      failed=0
      rest=$((secs - secs / 2))
      for target in config:$((secs / 2)) chunk-index:$((rest / 5)) artifact:$((rest / 5)) \
                    datasource:$((rest / 5)) udf:$((rest / 5)) uki:$((rest - 4 * (rest / 5))); do
        name=fuzz-${target%%:*}
        t=${target##*:}
        # libFuzzer reads -max_total_time=0 as "no limit": a short FUZZ_SECONDS must still end.
        [ "$t" -ge 1 ] || t=1
        echo "== fuzz: $name for ${t}s"
        corpus=$build/fuzz-corpus/${target%%:*}
        seeds=$top/tests/fuzz/corpus/${target%%:*}
        mkdir -p "$corpus"
        start=$(date +%s)
        log=$build/$name.log
        if "$build/tests/fuzz/$name" -max_total_time="$t" -timeout=20 -rss_limit_mb=2048 \
             -artifact_prefix="$build/fuzz-artifacts/$name-" "$corpus" "$seeds" >"$log" 2>&1; then
          cases+="<testcase classname=\"fuzz\" name=\"$name ${t}s\" time=\"$(($(date +%s) - start))\"/>"
          tail -n 1 "$log"
        else
          tail -n 30 "$log"
          failed=$((failed + 1))
          cases+="<testcase classname=\"fuzz\" name=\"$name ${t}s\"><failure message=\"crash or sanitizer report; see $log and $build/fuzz-artifacts\"/></testcase>"
        fi
      done
      echo "<testsuite tests=\"2\" failures=\"$failed\">$cases</testsuite>" >"$xml"
      ;;
    *) echo "tests/run.sh: unknown layer '$layer' (unit, integration, e2e, fuzz)" >&2; exit 2 ;;
  esac
  if [ ! -s "$xml" ]; then
    echo "tests/run.sh: the $layer layer produced no results: counted as a failure" >&2
    echo '<testsuite tests="1" failures="1"><testcase classname="'"$layer"'" name="layer did not run"><failure message="no results"/></testcase></testsuite>' >"$xml"
  fi
  xmls+=("$xml")
  grep -v "^$layer " "$times" 2>/dev/null >"$times.new"
  printf '%-12s %5d s\n' "$layer" $((SECONDS - layer_start)) >>"$times.new"
  mv "$times.new" "$times"
done

[ ${#xmls[@]} -gt 0 ] || { echo "0 passed, 0 failed"; exit 0; }
/usr/bin/python3 "$top/tests/summarize.py" "${xmls[@]}"
